"""The trained pipeline as a market policy: the HTTP service's own request flow, per request.

``PipelinePolicy`` asks a ``RecommenderService`` (``recsys.serving``: two-tower retrieval among
the products on a live shelf, candidate features with the live session signals, the ranker;
popularity for viewers the model never saw) for each request's products, exactly as a client
of ``GET /recommend`` would, and feeds it each day's events afterwards, as ``POST /events``
would. ``load`` builds it from a ``recsys-pipeline`` (or ``recsys-train`` + ``recsys-rank``)
run, with its state as of the market's first moment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.market.policy import MarketView, Policy, Requests, Slates
from recsys.ranking.events import EVENT_CODE, SessionEvent, event_columns
from recsys.serving.loading import load_trained_service
from recsys.serving.protocol import RecommenderService

EVENT_NAME = {code: name for name, code in EVENT_CODE.items()}


class PipelinePolicy(Policy):
    name = "pipeline"

    def __init__(self, service: RecommenderService) -> None:
        self.service = service

    @classmethod
    def load(
        cls,
        checkpoint: str | Path,
        *,
        start_ts: int,
        ranker: str | Path | None = None,
        cache_dir: str | None = None,
    ) -> PipelinePolicy:
        """The pipeline of ``checkpoint`` (and ``ranker``, default the blend) serving from
        ``start_ts``: sessions and popularity from the world's events before it only."""
        return cls(load_trained_service(checkpoint, until=start_ts, ranker=ranker,
                                        cache_dir=cache_dir))  # fmt: skip

    def recommend(self, requests: Requests, market: MarketView) -> Slates:
        k = requests.k
        session = np.full((len(requests), k), -1, dtype=np.int64)
        product = session.copy()
        for i, (user, ts) in enumerate(zip(requests.user_id.tolist(), requests.ts.tolist(),
                                           strict=True)):  # fmt: skip
            items = self.service.recommend(user, ts, k, kinds=("product",)).items[:k]
            for j, item in enumerate(items):
                session[i, j], product[i, j] = item.session, item.id
        return Slates(session, product)

    def observe(self, logs: dict[str, pd.DataFrame]) -> None:
        cols = event_columns(logs["events"])
        events = [
            SessionEvent(ts, user, EVENT_NAME[code], session, streamer, product, value)
            for ts, user, code, session, streamer, product, value in zip(
                cols.ts_list, cols.user, cols.code, cols.session, cols.streamer, cols.product,
                cols.value, strict=True,
            )
        ]  # fmt: skip
        self.service.ingest(events)
