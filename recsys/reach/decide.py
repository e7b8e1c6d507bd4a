"""Decisions: for each trigger, send or not, on which channel, when, and why.

``decide`` takes the triggers due (``recsys.reach.triggers.TRIGGER_COLUMNS``), the viewers'
consent and a fitted ``ResponseModel`` and answers every trigger with a row of ``DECISION``:

1. a trigger naming a session, streamer or product the catalogue does not hold is skipped
   (``unknown_reference``); several triggers of one viewer for one session are merged into one
   message (the earliest moment answers; the others say which trigger carries them);
2. each remaining trigger gets its send time from the viewer's active hours: of the allowed
   times (on the hour back from the trigger's moment to ``max_lead_s`` before it, not before
   its business day starts, never in quiet hours; ``send_time="trigger"``: the moment itself),
   the one in the hour with the viewer's largest share of activity. It is priced there on every
   channel the viewer consented to: value = P(visit) x (``visit_value`` + ``gmv_margin`` x GMV
   per visit) - channel cost - P(unsubscribe) x ``unsubscribe_cost``;
3. the (trigger, channel) offers are taken greedily by value above ``min_value``, within the
   caps per viewer per day and week, per viewer and streamer per day, and pushes and SMS per
   viewer per day.

Every row carries ``reason_code`` (a fixed vocabulary, for counting) and ``reason`` (the numbers).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys.market.messages import CHANNEL_COST, CHANNELS
from recsys.reach.features import Clock, ReachHistory, features
from recsys.reach.model import ResponseModel

DECISION = ("trigger_id", "user_id", "kind", "session_id", "streamer_id", "product_id",
            "start_ts", "send", "channel", "ts", "p_visit", "value", "reason_code",
            "reason")  # fmt: skip
REASONS = ("sent", "unknown_reference", "merged", "no_consent", "no_send_time", "low_value",
           "cap_user_day", "cap_user_week", "cap_streamer_day", "cap_push_day",
           "cap_sms_day")  # fmt: skip


@dataclass(frozen=True)
class DecisionConfig:
    quiet_start_hour: int = 22  # local; quiet until quiet_end_hour
    quiet_end_hour: int = 8
    max_lead_s: int = 10 * 3600
    step_s: int = 3600
    send_time: str = "chosen"  # "chosen" | "trigger" (at the trigger's moment)
    per_user_day: int = 4
    per_user_week: int = 8
    per_user_streamer_day: int = 1
    push_per_user_day: int = 2
    sms_per_user_day: int = 1
    visit_value: float = 1.0  # yuan a return visit is worth beside its GMV
    gmv_margin: float = 0.1  # yuan of value per yuan of incremental GMV
    unsubscribe_cost: float = 5.0  # yuan: the future reach a withdrawn consent loses
    min_value: float = 0.25  # yuan
    channel_cost: dict[str, float] = field(default_factory=lambda: dict(CHANNEL_COST))

    def __post_init__(self) -> None:
        if self.send_time not in ("chosen", "trigger"):
            raise ValueError(f"DecisionConfig.send_time: 'chosen' or 'trigger', got "
                             f"{self.send_time!r}")  # fmt: skip
        for h in (self.quiet_start_hour, self.quiet_end_hour):
            if not 0 <= h < 24:
                raise ValueError(f"DecisionConfig: quiet hours must be in 0..23, got {h}")
        if self.step_s <= 0 or self.max_lead_s < 0:
            raise ValueError("DecisionConfig: step_s must be > 0 and max_lead_s >= 0")
        if set(self.channel_cost) != set(CHANNELS):
            raise ValueError(f"DecisionConfig.channel_cost: one cost per channel {CHANNELS}")

    def quiet(self, hour: np.ndarray) -> np.ndarray:
        a, b = self.quiet_start_hour, self.quiet_end_hour
        return (hour >= a) | (hour < b) if a > b else (hour >= a) & (hour < b)


@dataclass(frozen=True)
class Catalogue:
    """What a trigger may name: sessions (with streamer and end), products."""

    sessions: pd.DataFrame  # session_id, streamer_id, end_ts
    product_ids: frozenset

    @classmethod
    def of(cls, sessions: pd.DataFrame, products: pd.DataFrame) -> Catalogue:
        s = sessions[["session_id", "streamer_id", "end_ts"]].set_index("session_id")
        return cls(s, frozenset(products["product_id"].tolist()))


def _screen(triggers: pd.DataFrame, catalogue: Catalogue) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(triggers to price, with ``end_ts``; the rest as decisions: unknown or merged)."""
    s = catalogue.sessions.reindex(triggers["session_id"].to_numpy())
    unknown = s["streamer_id"].isna().to_numpy() & (triggers["session_id"] >= 0).to_numpy()
    unknown |= (s["streamer_id"].to_numpy() != triggers["streamer_id"].to_numpy()) & ~unknown \
        & (triggers["session_id"] >= 0).to_numpy()  # fmt: skip
    p = triggers["product_id"].to_numpy(np.int64)
    unknown |= (p >= 0) & ~np.isin(p, np.fromiter(catalogue.product_ids, np.int64))
    t = triggers.assign(end_ts=s["end_ts"].fillna(-1).to_numpy(np.int64))
    bad = _skipped(t.loc[unknown], "unknown_reference",
                   "names a session, streamer or product the catalogue does not hold")  # fmt: skip
    t = t.loc[~unknown].sort_values(["start_ts", "kind", "trigger_id"], kind="stable")
    first = t.groupby(["user_id", "session_id"])["trigger_id"].transform("first")
    merged = t.loc[(first != t["trigger_id"]).to_numpy()]
    carrier = first.loc[merged.index].to_numpy()
    out = _skipped(merged, "merged", "")
    out["reason"] = [f"merged into the message of trigger {c}" for c in carrier]
    return t.loc[(first == t["trigger_id"]).to_numpy()], pd.concat([bad, out])


def _skipped(t: pd.DataFrame, code: str, why: str) -> pd.DataFrame:
    return t.assign(send=False, channel="", ts=-1, p_visit=np.nan, value=np.nan,
                    reason_code=code, reason=why)  # fmt: skip


def _offers(t: pd.DataFrame, consent: pd.DataFrame, history: ReachHistory, clock: Clock,
            config: DecisionConfig, now: int | None):  # fmt: skip
    """Every (trigger, consented channel) at the trigger's send time: of the allowed times, the
    one in the viewer's most active hour (the latest of equals)."""
    start = t["start_ts"].to_numpy(np.int64)
    if config.send_time == "trigger":
        steps = np.zeros(1, dtype=np.int64)
    else:
        steps = np.arange(0, config.max_lead_s + 1, config.step_s, dtype=np.int64)
    rows, lead = np.repeat(np.arange(len(t)), len(steps)), np.tile(steps, len(t))
    ts = start[rows] - lead
    ts = np.where(lead > 0, ts // config.step_s * config.step_s, ts)  # on the hour before
    if now is not None and config.send_time == "chosen":  # at once is a choice too
        rows, ts = np.r_[rows, np.arange(len(t))], np.r_[ts, np.full(len(t), now, np.int64)]
    ok = (ts >= clock.day_start(start)[rows]) & ~config.quiet(clock.hour(ts)) & (ts <= start[rows])
    if now is not None:
        ok &= ts >= now
    times = pd.DataFrame({"row": rows[ok], "ts": ts[ok]}).drop_duplicates()
    user = t["user_id"].to_numpy(np.int64)[times["row"].to_numpy()]
    times["share"] = history.hour_share(user, clock.hour(times["ts"].to_numpy()))
    times = times.sort_values(["row", "share", "ts"], ascending=[True, False, False],
                              kind="stable").drop_duplicates("row")[["row", "ts"]]  # fmt: skip
    agreed = consent.set_index("user_id").reindex(t["user_id"].to_numpy()).fillna(False)
    parts = []
    for channel in CHANNELS:
        allowed = agreed[channel].to_numpy(bool)[times["row"].to_numpy()]
        parts.append(times.loc[allowed].assign(channel=channel))
    offers = pd.concat(parts, ignore_index=True)
    base = t.reset_index(drop=True).drop(columns=["ts"], errors="ignore")
    return offers.join(base, on="row"), set(times["row"].tolist()), agreed


def _price(offers: pd.DataFrame, history: ReachHistory, model: ResponseModel,
           config: DecisionConfig) -> pd.DataFrame:  # fmt: skip
    """Each offer's P(visit) and net value, best first."""
    if offers.empty:
        return offers.assign(p_visit=[], value=[])
    x = features(history, offers)
    p = model.p_visit(x)
    gmv = offers["kind"].map(model.gmv_per_visit).fillna(0.0).to_numpy()
    cost = offers["channel"].map(config.channel_cost).to_numpy(np.float64)
    value = p * (config.visit_value + config.gmv_margin * gmv) - cost \
        - model.p_unsubscribe(x) * config.unsubscribe_cost  # fmt: skip
    o = offers.assign(p_visit=p, value=value).sort_values(["value", "ts"], ascending=[False, True],
                                                          kind="stable")  # fmt: skip
    return o.drop_duplicates(["row", "channel"])


CAPS = (("cap_user_day", "per_user_day"), ("cap_user_week", "per_user_week"),
        ("cap_streamer_day", "per_user_streamer_day"), ("cap_push_day", "push_per_user_day"),
        ("cap_sms_day", "sms_per_user_day"))  # fmt: skip


def _keys(user: int, streamer: int, channel: str, day: int) -> dict:
    """The cap counters one message moves (per business day)."""
    return {"cap_user_day": (user, day), "cap_streamer_day": (user, streamer, day),
            "cap_push_day": (user, day) if channel == "push" else None,
            "cap_sms_day": (user, day) if channel == "sms" else None}  # fmt: skip


def _take(best: pd.DataFrame, week: Counter, config: DecisionConfig, clock: Clock,
          today: pd.DataFrame | None) -> tuple[dict, dict]:  # fmt: skip
    """Greedy by value within the caps, counting ``today``'s messages already decided: (row ->
    the offer taken, row -> the cap that blocked its best offer)."""
    used: Counter = Counter()
    for r in (today if today is not None else pd.DataFrame()).itertuples(index=False):
        for c, k in _keys(r.user_id, r.streamer_id, r.channel, int(clock.day_start(r.ts))).items():
            if k is not None:
                used[(c, k)] += 1
    taken, blocked = {}, {}
    limits = {code: getattr(config, name) for code, name in CAPS}
    for r in best.loc[best["value"] >= config.min_value].itertuples(index=False):
        if r.row in taken:
            continue
        keys = _keys(r.user_id, r.streamer_id, r.channel, int(clock.day_start(r.ts)))
        full = [c for c, k in keys.items() if k is not None and used[(c, k)] >= limits[c]]
        this_week = used[("cap_user_day", keys["cap_user_day"])] + week[r.user_id]
        if this_week >= limits["cap_user_week"]:
            full.append("cap_user_week")
        if full:
            blocked.setdefault(r.row, full[0])
            continue
        taken[r.row] = r
        for c, k in keys.items():
            if k is not None:
                used[(c, k)] += 1
    return taken, blocked


def decide(triggers: pd.DataFrame, consent: pd.DataFrame, history: ReachHistory,
           model: ResponseModel, catalogue: Catalogue, config: DecisionConfig,
           clock: Clock | None = None, now: int | None = None,
           today: pd.DataFrame | None = None) -> pd.DataFrame:  # fmt: skip
    """One ``DECISION`` row per trigger, in trigger order. ``now``: no message before it (the
    decision time of a stream; None: the start of each trigger's business day); ``today``: the
    messages already decided since the business day began (``user_id``, ``streamer_id``,
    ``channel``, ``ts``), which count towards the day's caps (a stream decides many times a
    day; the market once)."""
    clock = clock or history.clock
    t, done = _screen(triggers, catalogue)
    offers, timed, agreed = _offers(t, consent, history, clock, config, now)
    best = _price(offers, history, model, config)
    s = history.sent
    day0 = int(clock.day_start(t["start_ts"].to_numpy(np.int64)).min(initial=0))
    week = Counter(s.loc[s["ts"] >= day0 - 6 * 86_400, "user_id"].tolist())
    taken, blocked = _take(best, week, config, clock, today)
    t = t.reset_index(drop=True)
    decided = _explain(len(t), taken, blocked, best.drop_duplicates("row").set_index("row"),
                       timed, agreed[list(CHANNELS)].to_numpy(bool).any(axis=1), clock, config)
    out = pd.concat([pd.concat([t.drop(columns=["end_ts"]), decided], axis=1),
                     done.drop(columns=["end_ts"])], ignore_index=True)  # fmt: skip
    out = out.sort_values("trigger_id", kind="stable", ignore_index=True)
    return out.astype({"send": bool, "ts": np.int64})[list(DECISION)]


def _explain(n, taken, blocked, top, timed, consented, clock: Clock,
             config: DecisionConfig) -> pd.DataFrame:  # fmt: skip
    """send, channel, ts, p_visit, value, reason_code, reason of the priced triggers."""
    p = top["p_visit"].reindex(range(n)).to_numpy(np.float64, copy=True)
    value = top["value"].reindex(range(n)).to_numpy(np.float64, copy=True)
    best = top["channel"].reindex(range(n)).fillna("").to_numpy(object)
    send, channel, ts = np.zeros(n, bool), np.full(n, "", dtype=object), np.full(n, -1, np.int64)
    code, why = [], []
    quiet = f"no send time between the day's start (or now) and the moment outside quiet hours " \
        f"{config.quiet_start_hour:02d}-{config.quiet_end_hour:02d}"  # fmt: skip
    for i in range(n):
        if i in taken:
            r = taken[i]
            send[i], channel[i], ts[i], p[i], value[i] = True, r.channel, r.ts, r.p_visit, r.value
            at = f"{int(clock.hour(r.ts)):02d}:{int(r.ts) // 60 % 60:02d}"
            code.append("sent")
            why.append(f"P(visit) {r.p_visit:.3f} by {r.channel} at {at} local, value "
                       f"{r.value:.3f} >= {config.min_value}")  # fmt: skip
        elif not consented[i]:
            code.append("no_consent")
            why.append("no channel consented")
        elif i not in timed:
            code.append("no_send_time")
            why.append(quiet)
        else:
            code.append(blocked.get(i, "low_value"))
            limit = "over the cap" if i in blocked else f"< {config.min_value}"
            why.append(f"best offer {best[i]} value {value[i]:.3f} {limit}")
    return pd.DataFrame({"send": send, "channel": channel, "ts": ts, "p_visit": p,
                         "value": value, "reason_code": code, "reason": why})  # fmt: skip
