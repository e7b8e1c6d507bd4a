"""Host triggers: suggestions with their reasons, judged once a minute has closed.

Minute ``m`` of a room closes when its watermark passes ``(m + 1) * 60 + lateness_s``: no
on-time event can change it any more. Then, for that minute:

* **engagement drop** (suggest a lottery / red packet): interactions (comments, likes, shares,
  follows, clicks, carts, claims) per viewer-minute over the last minutes fall below
  ``drop_ratio`` x their usual rate (the median over the ``base_minutes`` before them). The
  window is the shortest of ``drop_minutes`` to ``drop_max_minutes`` in which at least
  ``drop_min_expected`` interactions were expected: a full room is judged on its last two
  minutes, a room of a few viewers waits for enough evidence instead of calling every quiet
  minute a drop;
* **attention spike** on a product (suggest a limited-time offer): its clicks and carts in the
  minute reach ``spike_ratio`` x the room's clicks and carts per minute over the
  ``base_minutes`` before plus ``spike_min``;
* **question burst** ("N viewers ask ..."): a question cluster's distinct askers within
  ``burst_minutes`` reach ``burst_ratio`` x as many as it drew in as long over the
  ``base_minutes`` before, plus ``burst_askers``.

Each kind has a cooldown per room (and per product or cluster) so a host is not told the same
thing every minute.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from recsys.liveroom.room import M, RoomState

log = logging.getLogger(__name__)
INTERACTION_METRICS = [
    M[k] for k in ("comments", "likes", "shares", "follows", "clicks", "carts", "coupon_claims")
]


@dataclass(frozen=True)
class TriggerConfig:
    base_minutes: int = 10
    drop_minutes: int = 2
    drop_max_minutes: int = 5
    drop_ratio: float = 0.2
    drop_min_expected: float = 20.0
    spike_ratio: float = 2.0
    spike_min: float = 15.0
    burst_minutes: int = 5
    burst_ratio: float = 2.0
    burst_askers: int = 10
    cooldown_minutes: int = 10


@dataclass(frozen=True)
class Suggestion:
    room: int
    ts: int  # event time at which it was known: the end of the minute judged
    kind: str  # "drop" | "spike" | "burst"
    action: str
    reason: str
    product: int | None = None
    cluster: int | None = None
    count: int | None = None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class RoomTriggers:
    """The trigger state of one room: which minutes were judged, cooldowns."""

    def __init__(self, config: TriggerConfig) -> None:
        self.config = config
        self.judged = -1  # last minute judged
        self.quiet_until: dict[tuple, int] = {}  # (kind, key) -> first minute it may fire again

    def _ready(self, key: tuple, minute: int) -> bool:
        if self.quiet_until.get(key, -1) > minute:
            return False
        self.quiet_until[key] = minute + self.config.cooldown_minutes
        return True

    def judge(self, state: RoomState, minute: int, asked: dict[int, tuple[int, float]], name):
        """Suggestions for closed ``minute``; ``asked``: cluster -> (distinct askers within
        ``burst_minutes``, askers expected in as long from the ``base_minutes`` before);
        ``name(cluster)``: its representative question."""
        c, out, end = self.config, [], (minute + 1) * 60
        first = minute - c.base_minutes - c.drop_minutes + 1
        if state.first_ts <= first * 60:  # enough history to judge drops and spikes
            drop = self._drop(state, minute)
            if drop and self._ready(("drop",), minute):
                out.append(Suggestion(state.room, end, "drop", "lottery / red packet", drop))
            for product, reason in self._spikes(state, minute):
                if self._ready(("spike", product), minute):
                    action = f"limited-time offer on product {product}"
                    out.append(
                        Suggestion(state.room, end, "spike", action, reason, product=product)
                    )
        for cluster, (askers, usual) in sorted(asked.items()):
            bar = c.burst_ratio * usual + c.burst_askers
            if askers >= bar and self._ready(("burst", cluster), minute):
                action = f"answer: {askers} viewers ask \u201c{name(cluster)}\u201d"
                reason = (
                    f"{askers} distinct askers in {c.burst_minutes} minutes vs {usual:.1f} usually"
                )
                out.append(
                    Suggestion(
                        state.room, end, "burst", action, reason, cluster=cluster, count=askers
                    )
                )
        return out

    def _drop(self, state: RoomState, minute: int) -> str | None:
        """The first window back from ``minute`` expecting enough interactions decides."""
        c = self.config
        first = max(minute - c.base_minutes - c.drop_max_minutes + 1, state.first_ts // 60)
        counts, online = state.span(first, minute)
        inter, online = counts[:, INTERACTION_METRICS].sum(axis=1), np.maximum(online, 0.0)
        for window in range(c.drop_minutes, c.drop_max_minutes + 1):
            if window + c.base_minutes > len(inter):
                return None
            judged = self._window(inter, online, window)
            if judged is None:
                return None
            rate, base, views = judged
            if base * views < c.drop_min_expected:
                continue
            if rate >= c.drop_ratio * base:
                return None
            return (
                f"{rate * views:.0f} interactions from {views:.0f} viewer-minutes in the "
                f"last {window} min: {rate:.2f} per viewer-minute vs {base:.2f} usually"
            )
        return None

    def _window(self, inter: np.ndarray, online: np.ndarray, window: int):
        """(rate, usual rate, viewer-minutes) of the last ``window`` minutes, or None when the
        room was empty or seen too little before. The usual rate is the median of the earlier
        minutes' rates, so one burst of likes does not make the minutes after it a drop."""
        c, n = self.config, len(inter)
        now, before = slice(n - window, n), slice(n - window - c.base_minutes, n - window)
        views, seen = float(online[now].sum()), online[before] > 0
        if not views or seen.sum() < c.base_minutes // 2:
            return None
        base = float(np.median(inter[before][seen] / online[before][seen]))
        return float(inter[now].sum()) / views, base, views

    def _spikes(self, state: RoomState, minute: int) -> list[tuple[int, str]]:
        """Products whose clicks and carts in ``minute`` stand out against the busiest product
        of each of the ``base_minutes`` before (the product on show, mostly)."""
        c = self.config
        tops = [
            max((a + b for a, b in state.products.get(m, {}).values()), default=0.0)
            for m in range(minute - c.base_minutes, minute)
        ]
        base = sum(tops) / c.base_minutes
        bar = c.spike_ratio * base + c.spike_min
        out = []
        for product, (clicks, carts) in state.products.get(minute, {}).items():
            if clicks + carts >= bar:
                out.append(
                    (
                        product,
                        f"{clicks + carts:.0f} clicks and carts on product "
                        f"{product} in one minute vs {base:.1f} a minute on the "
                        "busiest product before",
                    )
                )
        return sorted(out)


def closed_through(state: RoomState, lateness_s: int) -> int:
    """The last minute of the room no on-time event can change."""
    return int(np.floor((state.watermark - lateness_s) / 60)) - 1
