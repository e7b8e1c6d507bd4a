"""Reach policies for the market (``recsys.market.Policy.notify``), slates left to another policy.

* ``ReachPolicy``: the learned policy. It learns its ``ResponseModel`` from the randomised days
  it observed (``RandomisedReach``'s logs) when first asked to notify, then answers each day's
  triggers with ``decide`` (value, channel, send time, caps, merging, reasons) and writes the
  copy. ``time_share`` of the messages (by a hash of the trigger) go at the trigger's moment
  instead of the chosen time: the send-time experiment;
* ``NoSendPolicy``: never sends (the baseline every increment is measured against);
* ``BlastPolicy``: every trigger, on the loudest channel the viewer consented to, at its moment;
* ``RulePolicy``: followed-streamer triggers only, by push where allowed, at the moment;
* ``RandomisedReach``: each trigger sent with ``share``, on a random consented channel, at a
  random time between ``max_lead_s`` before its moment (not before its day) and the moment.

``decisions`` keeps every day's decision rows (with copy and reasons): the messages table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.experiments.assignment import bucket
from recsys.market.messages import CHANNELS
from recsys.market.policy import MarketView, Messages, Policy
from recsys.reach.copy import CopyWriter
from recsys.reach.decide import Catalogue, DecisionConfig, decide
from recsys.reach.features import Clock, ReachHistory, streamer_categories
from recsys.reach.learn import Learner
from recsys.reach.texts import ProfileTags, message_texts


class _Delegating(Policy):
    """Slates and coupons from ``slates``; every observed day passed on to it."""

    def __init__(self, slates: Policy) -> None:
        self.slates = slates
        self.decisions: list[pd.DataFrame] = []

    def recommend(self, requests, market):
        return self.slates.recommend(requests, market)

    def grant_coupons(self, viewers, day, market):
        return self.slates.grant_coupons(viewers, day, market)

    def observe(self, logs):
        self.slates.observe(logs)

    def _answer(self, rows: pd.DataFrame) -> Messages:
        self.decisions.append(rows)
        sent = rows.loc[rows["send"]]
        return Messages(sent["trigger_id"].to_numpy(np.int64), sent["channel"].to_numpy(object),
                        sent["ts"].to_numpy(np.int64))  # fmt: skip


def _consent(triggers: pd.DataFrame, market: MarketView) -> np.ndarray:
    """(n, 3) bool: the consent of each trigger's viewer per channel."""
    c = market.consent.set_index("user_id").reindex(triggers["user_id"].to_numpy())
    return c[list(CHANNELS)].fillna(False).to_numpy(bool)


def _fixed(triggers: pd.DataFrame, send: np.ndarray, channel: np.ndarray, ts: np.ndarray,
           why: str) -> pd.DataFrame:  # fmt: skip
    return triggers.assign(send=send, channel=np.where(send, channel, ""),
                           ts=np.where(send, ts, -1), reason_code=np.where(send, "sent", "rule"),
                           reason=why)  # fmt: skip


class NoSendPolicy(_Delegating):
    name = "no_send"

    def notify(self, triggers, market):
        no = np.zeros(len(triggers), dtype=bool)
        return self._answer(_fixed(triggers, no, np.full(len(triggers), ""), no, "no messages"))


class BlastPolicy(_Delegating):
    name = "blast"

    def notify(self, triggers, market):
        c = _consent(triggers, market)
        loudest = np.array(CHANNELS, dtype=object)[2 - np.argmax(c[:, ::-1], axis=1)]
        send = c.any(axis=1)
        return self._answer(_fixed(triggers, send, loudest, triggers["start_ts"].to_numpy(),
                                   "every trigger, loudest consented channel"))  # fmt: skip


class RulePolicy(_Delegating):
    name = "rule"

    def notify(self, triggers, market):
        c = _consent(triggers, market)
        send = (triggers["kind"] == "followed_streamer_live").to_numpy() & c[:, :2].any(axis=1)
        channel = np.where(c[:, 1], "push", "in_app").astype(object)
        return self._answer(_fixed(triggers, send, channel, triggers["start_ts"].to_numpy(),
                                   "followed streamer goes live"))  # fmt: skip


class RandomisedReach(_Delegating):
    name = "randomised_reach"

    def __init__(self, slates: Policy, *, share: float, max_lead_s: int, clock: Clock,
                 seed: int) -> None:  # fmt: skip
        super().__init__(slates)
        self.share, self.max_lead_s, self.clock = share, max_lead_s, clock
        self.rng = np.random.default_rng(seed)

    def notify(self, triggers, market):
        c = _consent(triggers, market)
        u = self.rng.random((len(triggers), 3))
        send = (u[:, 0] < self.share) & c.any(axis=1)
        pick = np.where(c, self.rng.random(c.shape), -1.0).argmax(axis=1)  # uniform among agreed
        start = triggers["start_ts"].to_numpy(np.int64)
        ts = np.maximum(start - (u[:, 2] * self.max_lead_s).astype(np.int64),
                        self.clock.day_start(start))  # fmt: skip
        return self._answer(_fixed(triggers, send, np.array(CHANNELS, dtype=object)[pick], ts,
                                   "randomised"))  # fmt: skip


class ReachPolicy(_Delegating):
    name = "reach"

    def __init__(self, slates: Policy, market: MarketView, *, decision: DecisionConfig,
                 clock: Clock, copy: CopyWriter, time_share: float = 0.0,
                 salt: str = "reach-time") -> None:  # fmt: skip
        super().__init__(slates)
        self.config, self.clock, self.copy = decision, clock, copy
        self.time_share, self.salt = time_share, salt
        self.catalogue = Catalogue.of(market.sessions, market.products)
        category = streamer_categories(market.shelf, market.products)
        self.history = ReachHistory(clock, category)
        self.tags = ProfileTags(market.products, category)
        self.learner = Learner(self.history, market.sessions, market.showcase, market.products)
        self.model = None

    def observe(self, logs):
        super().observe(logs)
        self.learner.observe(logs, learn=self.model is None)
        self.tags.observe(logs["events"])

    def notify(self, triggers, market):
        if self.model is None:
            self.model = self.learner.fit()
        rows = decide(triggers, market.consent, self.history, self.model, self.catalogue,
                      self.config, self.clock)  # fmt: skip
        rows["send_time"] = "chosen"
        if self.time_share > 0:
            rows = self._at_trigger_time(rows)
        return self._answer(message_texts(rows, market, self.history, self.copy, self.tags))

    def _at_trigger_time(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The send-time experiment, randomised per message: a hashed ``time_share`` of the
        triggers get their message at the trigger's moment instead of the chosen time.
        ``time_differs`` (known before the coin: the chosen time is not the moment, and the
        moment is outside quiet hours) marks the messages the factor can change at all."""
        start = rows["start_ts"].to_numpy(np.int64)
        coin = bucket(rows["trigger_id"].to_numpy(np.int64), self.salt, "send_time")
        group = coin < self.time_share
        differs = rows["send"].to_numpy(bool) & (rows["ts"].to_numpy(np.int64) != start) \
            & ~self.config.quiet(self.clock.hour(start))  # fmt: skip
        rows["ts"] = np.where(group & differs, start, rows["ts"])
        rows["send_time"] = np.where(group, "trigger", "chosen")
        rows["time_differs"] = differs
        return rows
