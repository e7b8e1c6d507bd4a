"""Customer lifetime value: BG/NBD purchases x Gamma-Gamma spend, fitted on the purchase log.

Written here rather than taken from ``lifetimes``: that library is unmaintained since 2020 and,
with this project's numpy 2.4 / pandas 3.1, warns on import (a removed pandas option) and its
``datasets`` module fails (``pkg_resources`` is gone from setuptools). The models are small:

- BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive, a
  buyer purchases at a Poisson rate lambda ~ Gamma(r, alpha); after each purchase they drop out
  with probability p ~ Beta(a, b). Fitted by maximum likelihood (L-BFGS-B on the log
  parameters, times scaled so the longest T is 10); its conditional expectation gives each
  buyer's expected purchases in the next ``horizon`` periods, and P(alive).
- Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"): a buyer's spend per purchase is
  Gamma(p, nu) with nu ~ Gamma(q, gamma), independent of their purchase rhythm; fitted by
  maximum likelihood on the repeat buyers, it shrinks each buyer's mean spend towards the
  population's.

Summary per buyer (the ``lifetimes`` conventions), with time in periods of ``period_s`` seconds
(a purchase's period is ``floor(ts / period_s)``): ``frequency`` the periods with a purchase
after the first, ``recency`` last minus first such period, ``T`` the end of the log's period
minus the first, ``monetary`` the mean value per repeat period (0 without repeats). The value
is what the buyer paid (``value="paid"``) or the list value (``"gmv"``); refunds are not
netted out. ``ltv`` = expected purchases x expected spend over the horizon, undiscounted. Users
who never bought are not in the model (it starts at a first purchase); a spend model that
cannot be fitted (fewer than two repeat buyers) leaves ``expected_spend`` and ``ltv`` NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

BOUND = (-10.0, 10.0)  # log-parameter bounds: keeps a degenerate fit finite
VALUES = {"paid": "amount", "gmv": "amount + nz(coupon_value)"}


def _fit(objective: Callable[[np.ndarray], float], n: int) -> tuple[np.ndarray, bool]:
    """exp of the minimiser over ``n`` log parameters (from all ones), and convergence."""
    res = minimize(objective, np.zeros(n), method="L-BFGS-B", bounds=[BOUND] * n)
    return np.exp(res.x), bool(res.success)


@dataclass(frozen=True)
class BgNbd:
    """BG/NBD parameters (``alpha`` in periods) and whether the optimiser converged."""

    r: float
    alpha: float
    a: float
    b: float
    converged: bool = True

    @staticmethod
    def log_likelihood(
        r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """Each buyer's log-likelihood (FHL 2005, eq. 6)."""
        head = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        still = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
        safe_b = np.where(x > 0, b + x - 1, 1.0)
        gone = betaln(a + 1, safe_b) - betaln(a, b) - (r + x) * np.log(alpha + t_x)
        return head + np.logaddexp(still, np.where(x > 0, gone, -np.inf))

    @classmethod
    def fit(cls, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, penalizer: float = 0.0) -> BgNbd:
        """Maximum likelihood over buyers with ``T > 0`` (a buyer first seen in the log's last
        period tells nothing yet)."""
        keep = T > 0
        if not keep.any():
            raise ValueError("ltv: every buyer's first purchase is in the last period; "
                             "nothing to fit (use a shorter period_s)")  # fmt: skip
        scale = 10.0 / float(T.max())
        x, t_x, T = x[keep], t_x[keep] * scale, T[keep] * scale

        def objective(theta: np.ndarray) -> float:
            ll = cls.log_likelihood(*np.exp(theta), x, t_x, T)
            return -float(ll.mean()) + penalizer * float(theta @ theta)

        (r, alpha, a, b), ok = _fit(objective, 4)
        return cls(float(r), float(alpha / scale), float(a), float(b), ok)

    def _odds_gone(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x): odds of having dropped out,
        0 for buyers without repeats (they cannot have)."""
        b1 = np.where(x > 0, self.b + x - 1, 1.0)
        ratio = (self.alpha + T) / (self.alpha + t_x)
        return np.where(x > 0, self.a / b1 * ratio ** (self.r + x), 0.0)

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(still a customer at T | x, t_x, T): 1 for buyers without repeats, by the model."""
        return 1.0 / (1.0 + self._odds_gone(x, t_x, T))

    def expected_purchases(
        self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] (FHL 2005, eq. 10; singular at a = 1)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + T + t)
        tail = ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        return (a + b + x - 1) / (a - 1) * (1.0 - tail) / (1.0 + self._odds_gone(x, t_x, T))


@dataclass(frozen=True)
class GammaGamma:
    """Gamma-Gamma spend parameters (``gamma`` in money units) and convergence."""

    p: float
    q: float
    gamma: float
    converged: bool = True

    @staticmethod
    def log_likelihood(
        p: float, q: float, gamma: float, x: np.ndarray, m: np.ndarray
    ) -> np.ndarray:
        """Log density of each buyer's mean spend ``m`` over ``x`` purchases."""
        px = p * x
        norm = gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma)
        return norm + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(gamma + m * x)

    @classmethod
    def fit(cls, x: np.ndarray, m: np.ndarray) -> GammaGamma | None:
        """Maximum likelihood over repeat buyers with a positive spend; None with fewer than
        two (nothing to learn the spread of spend from)."""
        keep = (x > 0) & (m > 0)
        if keep.sum() < 2:
            return None
        scale = float(m[keep].mean())
        x, m = x[keep], m[keep] / scale

        def objective(theta: np.ndarray) -> float:
            return -float(cls.log_likelihood(*np.exp(theta), x, m).mean())

        (p, q, gamma), ok = _fit(objective, 3)
        return cls(float(p), float(q), float(gamma * scale), ok)

    def expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """E[spend per purchase | x, m]: a weighted mean of the population's and the buyer's;
        NaN where it does not exist (p x + q <= 1, a heavy-tailed population)."""
        den = self.p * np.asarray(x, float) + self.q - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, (self.gamma + m * x) * self.p / den, np.nan)


@dataclass(frozen=True)
class Ltv:
    """Per buyer: summary, ``p_alive``, ``expected_purchases``, ``expected_spend``, ``ltv``."""

    users: pd.DataFrame
    bgnbd: BgNbd
    gamma_gamma: GammaGamma | None
    horizon: float
    period_s: int


def summary(
    con: duckdb.DuckDBPyConnection, period_s: int, value: str, end_ts: int | None
) -> pd.DataFrame:
    """frequency, recency, T and monetary per buyer, in DuckDB over the ``events`` view."""
    if value not in VALUES:
        raise ValueError(f"ltv: value must be one of {sorted(VALUES)}, got {value!r}")
    if end_ts is None:
        (end_ts,) = con.execute("SELECT max(ts) FROM events").fetchone()
    return con.execute(f"""
        WITH p AS (
            SELECT user_id, floor(ts / {int(period_s)})::BIGINT AS period,
                   sum({VALUES[value]})::DOUBLE AS value
            FROM events WHERE event_type = 'purchase' AND ts <= {int(end_ts)}
            GROUP BY user_id, period),
        q AS (SELECT *, min(period) OVER (PARTITION BY user_id) AS first FROM p)
        SELECT user_id, count(*) - 1 AS frequency, max(period) - min(first) AS recency,
               {int(end_ts) // int(period_s)} - min(first) AS T,
               coalesce(avg(value) FILTER (WHERE period > first), 0) AS monetary
        FROM q GROUP BY user_id ORDER BY user_id
    """).df()  # fmt: skip


def fit_ltv(
    con: duckdb.DuckDBPyConnection, *, horizon: float, period_s: int, value: str,
    end_ts: int | None,
) -> Ltv:  # fmt: skip
    """Summarise the purchase log, fit both models and predict each buyer's value."""
    users = summary(con, period_s, value, end_ts)
    x, t_x, T, m = (users[c].to_numpy(float) for c in ("frequency", "recency", "T", "monetary"))
    bg, gg = BgNbd.fit(x, t_x, T), GammaGamma.fit(x, m)
    users["p_alive"] = bg.p_alive(x, t_x, T)
    users["expected_purchases"] = bg.expected_purchases(horizon, x, t_x, T)
    users["expected_spend"] = gg.expected_spend(x, m) if gg else np.nan
    users["ltv"] = users["expected_purchases"] * users["expected_spend"]
    return Ltv(users, bg, gg, horizon, period_s)
