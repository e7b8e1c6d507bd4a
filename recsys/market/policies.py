"""Reference policies, each a few lines on the ``Policy`` interface.

* ``RandomPolicy``: cards drawn uniformly from what is live (a lower bound);
* ``PopularityPolicy``: the live products bought most over the observed days, decayed daily;
* ``OraclePolicy``: the live products of highest true expected order value for this viewer
  (click x purchase probability x price, from the planted truth): an upper bound no learned
  policy can pass in expectation.

``slates_by_score`` turns any per-(request, live card) score into slates, so a new policy only
writes its score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.market.policy import MarketView, Policy, Requests, Slates
from recsys.simulation.response import (
    ResponseConfig,
    WorldTruth,
    card_factors,
    card_probabilities,
)

CHUNK = 1024  # requests expanded into their live cards at a time (memory: CHUNK x live cards)


def slates_by_score(
    requests: Requests, indptr: np.ndarray, live: pd.DataFrame, score: np.ndarray
) -> Slates:
    """The ``k`` best-scored live cards of each request (ties: lower product, then session).

    ``indptr`` / ``live``: the CSR of ``MarketView.live_shelf``; ``score``: one per live row."""
    n, k = len(requests), requests.k
    group = np.repeat(np.arange(n), np.diff(indptr))
    product, session = live["product_id"].to_numpy(np.int64), live["session_id"].to_numpy(np.int64)
    order = np.lexsort((session, product, -np.asarray(score, dtype=np.float64), group))
    rank = np.arange(len(order)) - indptr[group[order]]
    keep, pos = order[rank < k], rank[rank < k]
    out_session = np.full((n, k), -1, dtype=np.int64)
    out_product = np.full((n, k), -1, dtype=np.int64)
    out_session[group[keep], pos] = session[keep]
    out_product[group[keep], pos] = product[keep]
    return Slates(out_session, out_product)


class RandomPolicy(Policy):
    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def recommend(self, requests: Requests, market: MarketView) -> Slates:
        return Slates.concat([self._part(p, market) for p in requests.chunks(CHUNK)], requests.k)

    def _part(self, requests: Requests, market: MarketView) -> Slates:
        indptr, live = market.live_shelf(requests.ts)
        return slates_by_score(requests, indptr, live, self.rng.random(len(live)))


class PopularityPolicy(Policy):
    """Live products by purchases in the observed logs, each day's counts decayed by
    ``daily_decay`` (1: all-time counts)."""

    name = "popularity"

    def __init__(self, daily_decay: float = 0.7) -> None:
        self.daily_decay = daily_decay
        self.counts = pd.Series(dtype=np.float64)

    def observe(self, logs: dict[str, pd.DataFrame]) -> None:
        ev = logs["events"]
        bought = ev.loc[ev["event_type"] == "purchase", "product_id"].astype("int64")
        today = bought.value_counts().astype(np.float64)
        self.counts = (self.counts * self.daily_decay).add(today, fill_value=0.0)

    def warm(self, days: list[pd.DataFrame]) -> PopularityPolicy:
        """Observe the events of days before the market's first (oldest first), as a platform
        that has run for a while knows its best sellers."""
        for events in days:
            self.observe({"events": events})
        return self

    def recommend(self, requests: Requests, market: MarketView) -> Slates:
        return Slates.concat([self._part(p, market) for p in requests.chunks(CHUNK)], requests.k)

    def _part(self, requests: Requests, market: MarketView) -> Slates:
        indptr, live = market.live_shelf(requests.ts)
        score = self.counts.reindex(live["product_id"]).fillna(0.0).to_numpy()
        return slates_by_score(requests, indptr, live, score)


class OraclePolicy(Policy):
    """Reads the planted truth: P(click at the top) x P(purchase | click) x price."""

    name = "oracle"

    def __init__(self, truth: WorldTruth, response: ResponseConfig | None = None) -> None:
        self.truth, self.response = truth, response or ResponseConfig()

    def recommend(self, requests: Requests, market: MarketView) -> Slates:
        return Slates.concat([self._part(p, market) for p in requests.chunks(CHUNK)], requests.k)

    def _part(self, requests: Requests, market: MarketView) -> Slates:
        indptr, live = market.live_shelf(requests.ts)
        group = np.repeat(np.arange(len(requests)), np.diff(indptr))
        cards = live.assign(request_id=requests.request_id[group], user_id=requests.user_id[group],
                            ts=requests.ts[group])  # fmt: skip
        f = card_factors(self.truth, cards)
        click, convert = card_probabilities(f, self.response)
        return slates_by_score(requests, indptr, live, click * convert * f["price"])
