"""The response model: what a message is predicted to bring, learned from randomised sends.

The market's messages are additive: a message's entry into the room comes on top of the visits
the viewer would make anyway, so the visits attributed to a message (opened, then entered) are
its incremental visits. ``ResponseModel.fit`` learns, from messages whose sending, channel and
send time were randomised (``RandomisedReach``):

* ``visit``: P(the message brings the viewer into the room) from ``FEATURES``, a ridge-penalised
  logistic regression fitted by Newton's method (IRLS);
* ``unsubscribe``: P(the viewer withdraws the channel's consent) for push and SMS;
* ``gmv_per_visit``: the incremental GMV per incremental visit of each trigger kind, the ratio
  of the sent-minus-held-out differences in GMV and in entries of the triggering session (a
  Wald estimate: both differences come from the same coin flip, so no attribution rule enters).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys.reach.features import FEATURES


@dataclass(frozen=True)
class Logistic:
    """A fitted logistic regression on standardised columns."""

    coef: np.ndarray  # intercept first
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, ridge: float = 1.0, steps: int = 25) -> Logistic:
        if len(x) == 0 or len(np.unique(y)) < 2:
            raise ValueError(f"Logistic.fit: {len(x)} rows with outcomes {np.unique(y)}; both "
                             "outcomes are needed")  # fmt: skip
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        z = np.column_stack([np.ones(len(x)), (x - mean) / scale])
        w = np.zeros(z.shape[1])
        penalty = np.full(z.shape[1], ridge)
        penalty[0] = 0.0
        for _ in range(steps):
            p = 1.0 / (1.0 + np.exp(-z @ w))
            grad = z.T @ (p - y) + penalty * w
            hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(w, mean, scale)

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(self.coef[0] + z @ self.coef[1:])))

    def effects(self, names: tuple[str, ...]) -> dict[str, float]:
        """Each column's coefficient per unit of the raw column (readable in the report)."""
        return {n: float(c / s) for n, c, s in zip(names, self.coef[1:], self.scale, strict=True)}


@dataclass(frozen=True)
class ResponseModel:
    visit: Logistic
    unsubscribe: Logistic | None
    gmv_per_visit: dict[str, float] = field(default_factory=dict)
    n_rows: int = 0

    def p_visit(self, x: np.ndarray) -> np.ndarray:
        return self.visit.predict(x)

    def p_unsubscribe(self, x: np.ndarray) -> np.ndarray:
        paid = (x[:, FEATURES.index("push")] + x[:, FEATURES.index("sms")]) > 0
        if self.unsubscribe is None:
            return np.zeros(len(x))
        return np.where(paid, self.unsubscribe.predict(x[:, _UNSUB_COLS]), 0.0)

    def summary(self) -> dict:
        return {"rows": self.n_rows, "visit": self.visit.effects(FEATURES),
                "unsubscribe": self.unsubscribe.effects(_UNSUB_NAMES) if self.unsubscribe
                else None, "gmv_per_visit": self.gmv_per_visit}  # fmt: skip


_UNSUB_NAMES = ("sms", "fatigue")
_UNSUB_COLS = [FEATURES.index(n) for n in _UNSUB_NAMES]


def fit_response(rows: pd.DataFrame, x: np.ndarray, outcomes: pd.DataFrame) -> ResponseModel:
    """``rows``: the randomised messages (``kind``, ``channel``, ``visited``,
    ``unsubscribed``) with their feature rows ``x``; ``outcomes``: every randomised trigger
    (``kind``, ``sent``, ``entries``, ``gmv`` of the viewer in the triggering session)."""
    visit = Logistic.fit(x, rows["visited"].to_numpy(np.float64))
    paid = rows["channel"].to_numpy(object) != "in_app"
    unsub = rows["unsubscribed"].to_numpy(np.float64)[paid]
    unsubscribe = Logistic.fit(x[paid][:, _UNSUB_COLS], unsub) if len(np.unique(unsub)) == 2 \
        else None  # fmt: skip
    return ResponseModel(visit, unsubscribe, gmv_per_visit(outcomes), len(rows))


def gmv_per_visit(outcomes: pd.DataFrame) -> dict[str, float]:
    """Incremental GMV over incremental entries per trigger kind (0 where sending showed no
    more entries than holding out)."""
    out = {}
    for kind, g in outcomes.groupby("kind"):
        sent = g["sent"].to_numpy(bool)
        if sent.all() or not sent.any():
            continue
        d_entries = g.loc[sent, "entries"].mean() - g.loc[~sent, "entries"].mean()
        d_gmv = g.loc[sent, "gmv"].mean() - g.loc[~sent, "gmv"].mean()
        out[str(kind)] = float(max(d_gmv, 0.0) / d_entries) if d_entries > 0 else 0.0
    return out
