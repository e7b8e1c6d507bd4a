"""``TriggerEngine``: reach triggers evaluated incrementally from the event stream and schedule.

Four kinds (``TRIGGER_KINDS``), each a moment worth a message:

* ``followed_streamer_live``: a streamer the viewer follows (or trusts: bought from at least
  ``trust_purchases`` times) has a session starting; fired when the session is announced
  (``announce_lead_s`` before its start), or at once when the viewer follows after that;
* ``carted_item_featured``: a carted, unbought product is in the announced line-up of an
  upcoming session (one trigger per cart item and showcase slot, ``start_ts`` the slot's start);
* ``coupon_expiring``: a claimed coupon not used by a purchase ``coupon_warn_s`` before it
  expires (``coupon_ttl_s`` after the claim);
* ``lapsing_buyer``: a viewer who bought before and has not entered a room for ``lapse_days``
  (win-back; once per lapse; ``start_ts`` a day after the lapse: the end of its send window).

``push(batch)`` applies a batch of events (duplicates by event id are applied once) and returns
the triggers it caused; ``advance(now)`` returns the triggers the clock brings (announcements,
coupon warnings, lapses). Each trigger is emitted once, whatever is replayed. Events that
arrive out of order are applied by their own time stamps and counted; events naming an unknown
streamer or product are counted and not applied (``faults``).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.reach.ids import SeenIds
from recsys.reach.stream import CODE, EventBatch

TRIGGER_KINDS = ("followed_streamer_live", "carted_item_featured", "coupon_expiring",
                 "lapsing_buyer")  # fmt: skip
TRIGGER_COLUMNS = ("trigger_id", "user_id", "kind", "session_id", "streamer_id", "product_id",
                   "start_ts", "event_ts")  # fmt: skip


@dataclass(frozen=True)
class TriggerConfig:
    announce_lead_s: int = 86_400  # a session's line-up is announced this long before it starts
    coupon_ttl_s: int = 86_400
    coupon_warn_s: int = 3 * 3600
    lapse_days: float = 7.0
    trust_purchases: int = 0  # 0: only follows make a viewer a streamer's fan
    lateness_s: int = 600  # an event older than the newest minus this is counted late

    def __post_init__(self) -> None:
        for name in ("announce_lead_s", "coupon_ttl_s", "coupon_warn_s", "lateness_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"TriggerConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.lapse_days <= 0:
            raise ValueError(f"TriggerConfig.lapse_days must be > 0, got {self.lapse_days}")


class TriggerEngine:
    def __init__(self, sessions: pd.DataFrame, showcase: pd.DataFrame, products: pd.DataFrame,
                 config: TriggerConfig | None = None, first_id: int = 0) -> None:  # fmt: skip
        self.config = config or TriggerConfig()
        s = sessions.sort_values(["start_ts", "session_id"], kind="stable")
        self._sessions = [tuple(r) for r in s[["session_id", "streamer_id", "start_ts"]].to_numpy(
            np.int64).tolist()]  # fmt: skip
        self._streamers = set(s["streamer_id"].tolist())
        self._products = set(products["product_id"].tolist())
        slots = showcase.sort_values(["session_id", "start_ts"], kind="stable")
        sid = slots["session_id"].to_numpy(np.int64)
        cut = np.flatnonzero(np.diff(sid)) + 1
        rows = slots[["product_id", "start_ts"]].to_numpy(np.int64).tolist()
        self._lineup = {int(sid[a]): rows[a:b] for a, b in zip(np.r_[0, cut], np.r_[cut, len(sid)],
                                                                strict=True) if b > a}  # fmt: skip
        self._next_session = 0
        self.seen, self.faults = SeenIds(), Counter()
        self.fans: defaultdict[int, set[int]] = defaultdict(set)  # streamer -> viewers
        self._bought_from: Counter = Counter()  # (user, streamer) -> purchases
        # Open carts: product -> {user: last cart ts}.
        self.carts: defaultdict[int, dict[int, int]] = defaultdict(dict)
        self._bought: dict[tuple[int, int], int] = {}  # (user, product) -> last purchase ts
        self._upcoming: defaultdict[int, list] = defaultdict(list)  # product -> announced slots
        # A heap of (expiry, user, event id, session) of claimed coupons.
        self._coupons: list[tuple[int, int, int, int]] = []
        self._used: defaultdict[int, list[int]] = defaultdict(list)  # user -> coupon purchases
        self._last_active: dict[int, int] = {}
        self._buyer: set[int] = set()
        self._lapsing: list[tuple[int, int, int]] = []  # heap (due, user, last active) of buyers
        self._emitted: set[tuple] = set()
        self._out: list[tuple] = []
        self.next_id, self.watermark, self._pruned = first_id, -1, -1

    # -- events --------------------------------------------------------------------------------

    def push(self, batch: EventBatch) -> pd.DataFrame:
        """Apply a batch of events; the triggers they cause."""
        fresh = self.seen.first_time(batch.event_id)
        self.faults["duplicate event id"] += int((~fresh).sum())
        b = batch.take(fresh) if not fresh.all() else batch
        if len(b) == 0:
            return self._flush()
        newest = np.maximum.accumulate(np.r_[self.watermark, b.ts])[:-1]
        self.faults["out of order"] += int((b.ts < newest).sum())
        self.faults["late"] += int((b.ts < newest - self.config.lateness_s).sum())
        self.watermark = max(self.watermark, int(b.ts.max()))
        self._activity(b)
        for code, apply in ((CODE["follow"], self._follow), (CODE["cart"], self._cart),
                            (CODE["purchase"], self._purchase),
                            (CODE["coupon_claim"], self._claim)):  # fmt: skip
            rows = np.flatnonzero(b.kind == code)
            if len(rows):
                apply(b.take(rows))
        return self._flush()

    def _activity(self, b: EventBatch) -> None:
        """Last entry (or purchase) per viewer (a buyer's timer in ``_lapsing`` is moved only
        when it comes due: one heap entry per buyer, however often they come back)."""
        act = (b.kind == CODE["enter"]) | (b.kind == CODE["purchase"])
        if not act.any():
            return
        last, get = self._last_active, self._last_active.get
        for user, ts in zip(b.user_id[act].tolist(), b.ts[act].tolist(), strict=True):
            if ts > get(user, -1):
                last[user] = ts

    def _known(self, ids: np.ndarray, catalogue: set, what: str) -> np.ndarray:
        ok = np.fromiter((i in catalogue for i in ids.tolist()), dtype=bool, count=len(ids))
        self.faults[f"unknown {what}"] += int((~ok).sum())
        return ok

    def _follow(self, b: EventBatch) -> None:
        ok = self._known(b.streamer_id, self._streamers, "streamer")
        for user, streamer, ts in zip(b.user_id[ok].tolist(), b.streamer_id[ok].tolist(),
                                      b.ts[ok].tolist(), strict=True):  # fmt: skip
            self._fan(user, streamer, ts)

    def _fan(self, user: int, streamer: int, ts: int) -> None:
        """``user`` is now a fan: a trigger for each announced session not started yet."""
        if user in self.fans[streamer]:
            return
        self.fans[streamer].add(user)
        for session, s_streamer, start in reversed(self._sessions[: self._next_session]):
            if start <= ts:
                break
            if s_streamer == streamer:
                self._emit(0, user, session, streamer, -1, start, ts)

    def _cart(self, b: EventBatch) -> None:
        ok = self._known(b.product_id, self._products, "product")
        for user, product, ts in zip(b.user_id[ok].tolist(), b.product_id[ok].tolist(),
                                     b.ts[ok].tolist(), strict=True):  # fmt: skip
            carted = self.carts[product]
            if ts <= self._bought.get((user, product), -1) or ts <= carted.get(user, -1):
                continue
            carted[user] = ts
            for session, streamer, start in self._upcoming.get(product, ()):
                if start > ts:
                    self._emit(1, user, session, streamer, product, start, ts)

    def _purchase(self, b: EventBatch) -> None:
        ok = self._known(b.product_id, self._products, "product")
        b = b.take(ok)
        lapse = int(self.config.lapse_days * 86_400)
        for user, product, streamer, ts, coupon in zip(
            b.user_id.tolist(), b.product_id.tolist(), b.streamer_id.tolist(), b.ts.tolist(),
            b.coupon_value.tolist(), strict=True,
        ):  # fmt: skip
            if user not in self._buyer:
                self._buyer.add(user)
                last = self._last_active.get(user, ts)
                heapq.heappush(self._lapsing, (last + lapse, user, last))
            self._bought[(user, product)] = max(ts, self._bought.get((user, product), -1))
            if self.carts[product].get(user, ts + 1) <= ts:
                del self.carts[product][user]
            if coupon > 0:
                self._used[user].append(ts)
            if streamer >= 0 and self.config.trust_purchases > 0:
                self._bought_from[(user, streamer)] += 1
                if self._bought_from[(user, streamer)] >= self.config.trust_purchases:
                    self._fan(user, streamer, ts)

    def _claim(self, b: EventBatch) -> None:
        ttl = self.config.coupon_ttl_s
        claims = zip(b.user_id.tolist(), b.event_id.tolist(), b.ts.tolist(),
                     b.session_id.tolist(), strict=True)  # fmt: skip
        for user, eid, ts, session in claims:
            heapq.heappush(self._coupons, (ts + ttl, user, eid, session))

    # -- the clock -----------------------------------------------------------------------------

    def advance(self, now: int) -> pd.DataFrame:
        """The triggers due by ``now``: sessions announced, coupons about to expire, lapses."""
        self._announce(now)
        self._expiring(now)
        self._lapses(now)
        return self._flush()

    def _announce(self, now: int) -> None:
        horizon = now + self.config.announce_lead_s
        while self._next_session < len(self._sessions):
            session, streamer, start = self._sessions[self._next_session]
            if start > horizon:
                break
            self._next_session += 1
            for user in sorted(self.fans.get(streamer, ())):
                self._emit(0, user, session, streamer, -1, start, now)
            for product, slot_start in self._lineup.get(session, ()):
                self._upcoming[product].append((session, streamer, slot_start))
                for user, cart_ts in sorted(self.carts.get(product, {}).items()):
                    if cart_ts < slot_start:
                        self._emit(1, user, session, streamer, product, slot_start, now)
        if len(self._upcoming) and now >= self._pruned + 3600:  # drop slots that have begun
            self._pruned = now
            for product in list(self._upcoming):
                self._upcoming[product] = [s for s in self._upcoming[product] if s[2] > now]

    def _expiring(self, now: int) -> None:
        warn, ttl = self.config.coupon_warn_s, self.config.coupon_ttl_s
        while self._coupons and self._coupons[0][0] - warn <= now:
            expiry, user, eid, session = heapq.heappop(self._coupons)
            # Coupon purchases before this claim were paid with older coupons.
            spent = [t for t in self._used.get(user, ()) if t >= expiry - ttl]
            self._used[user] = spent
            used = [t for t in spent if t < expiry]
            if used:
                spent.remove(used[0])  # one purchase uses one coupon
            elif expiry > now:
                self._emit(2, user, session, -1, -1, expiry, expiry - warn, extra=eid)

    def _lapses(self, now: int) -> None:
        """Fire each buyer's lapse once; the timer then waits a lapse more to see them back."""
        lapse = int(self.config.lapse_days * 86_400)
        while self._lapsing and self._lapsing[0][0] <= now:
            due, user, last = heapq.heappop(self._lapsing)
            active = self._last_active.get(user, last)
            if active != last:  # came back since: the timer restarts from the last visit
                heapq.heappush(self._lapsing, (active + lapse, user, active))
                continue
            # Once per ``last``; the message may go until a day after the lapse.
            self._emit(3, user, -1, -1, -1, last + lapse + 86_400, last + lapse)
            heapq.heappush(self._lapsing, (now + lapse, user, last))

    # -- output --------------------------------------------------------------------------------

    def _emit(self, kind, user, session, streamer, product, start, event_ts, extra=0) -> None:
        key = (kind, user, session, product, start, extra)
        if key in self._emitted:
            return
        self._emitted.add(key)
        self._out.append((self.next_id, user, TRIGGER_KINDS[kind], session, streamer, product,
                          start, event_ts))  # fmt: skip
        self.next_id += 1

    def _flush(self) -> pd.DataFrame:
        rows, self._out = self._out, []
        cols = list(zip(*rows, strict=True)) if rows else [()] * len(TRIGGER_COLUMNS)
        return pd.DataFrame({c: np.array(v, dtype=object if c == "kind" else np.int64)
                             for c, v in zip(TRIGGER_COLUMNS, cols, strict=True)})  # fmt: skip
