"""``Learner``: training rows for the response model, gathered day by day from observed logs.

For each observed day it (1) re-derives the day's triggers from the event stream with a
``TriggerEngine`` (the same triggers the market offered, sent or not: a sent message is matched
to its trigger by viewer, kind, session, product and moment), (2) computes the features of each
sent message from the history as it stood before the day, (3) records, for every trigger, the
viewer's entries into the triggering session and the GMV bought there (the outcomes of the
held-out comparison), and only then (4) folds the day into the history. Only days whose
messages were randomised may be learned from; the caller says which (``learn=``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.reach.features import ReachHistory, features
from recsys.reach.model import ResponseModel, fit_response
from recsys.reach.stream import EventBatch
from recsys.reach.triggers import TriggerConfig, TriggerEngine

KEY = ["user_id", "kind", "session_id", "product_id", "start_ts"]


class Learner:
    def __init__(self, history: ReachHistory, sessions: pd.DataFrame, showcase: pd.DataFrame,
                 products: pd.DataFrame) -> None:  # fmt: skip
        self.history, self.sessions = history, sessions
        # Announce a whole business day ahead: the market offers a day's triggers at its start.
        self.engine = TriggerEngine(sessions, showcase, products,
                                    TriggerConfig(announce_lead_s=86_399))  # fmt: skip
        self.rows: list[pd.DataFrame] = []
        self.x: list[np.ndarray] = []
        self.outcomes: list[pd.DataFrame] = []

    def observe(self, logs: dict[str, pd.DataFrame], learn: bool) -> None:
        events = logs["events"]
        if len(events):
            day0 = int(self.history.clock.day_start(events["ts"].min()))
            triggers = self.engine.advance(day0)
            triggers = triggers.loc[triggers["start_ts"] >= day0]
            if learn:
                self._rows(triggers, logs)
            self.engine.push(EventBatch.from_frame(events))
        self.history.observe(logs)

    def _rows(self, triggers: pd.DataFrame, logs: dict[str, pd.DataFrame]) -> None:
        msg = logs.get("messages")
        if msg is None or msg.empty or triggers.empty:
            return
        sent = msg.merge(self.sessions[["session_id", "end_ts"]], on="session_id")
        self.x.append(features(self.history, sent))
        self.rows.append(sent[["kind", "channel", "visited", "unsubscribed"]])
        ev = logs["events"]
        ev = ev.loc[ev["event_type"].isin(("enter", "purchase"))]
        per = ev.assign(entries=(ev["event_type"] == "enter").astype(float),
                        gmv=ev["amount"].where(ev["event_type"] == "purchase", 0.0).fillna(0.0))
        per = per.groupby(["user_id", "session_id"])[["entries", "gmv"]].sum().reset_index()
        per = per.astype({"user_id": np.int64, "session_id": np.int64})
        out = triggers.merge(msg[KEY].assign(sent=True), on=KEY, how="left")
        out["sent"] = out["sent"].fillna(False).astype(bool)
        out = out.merge(per, on=["user_id", "session_id"], how="left").fillna(
            {"entries": 0.0, "gmv": 0.0})  # fmt: skip
        self.outcomes.append(out[["kind", "sent", "entries", "gmv"]])

    def fit(self) -> ResponseModel:
        if not self.rows:
            raise ValueError("reach: no randomised messages observed to learn from; run days "
                             "under RandomisedReach first (explore_days > 0)")  # fmt: skip
        return fit_response(pd.concat(self.rows, ignore_index=True), np.concatenate(self.x),
                            pd.concat(self.outcomes, ignore_index=True))  # fmt: skip
