"""The trained pipeline as a market policy: the HTTP service's own request flow, batched.

``PipelinePolicy`` answers a day's requests with a ``TrainedLiveService`` (``recsys.serving``:
two-tower retrieval among the products on a live shelf, candidate features with the live session
signals, the ranker; popularity for viewers the model never saw) and feeds it each day's events
afterwards, as ``POST /events`` would. Within a day the service's state does not move (the
market hands it the day's events at the end), so the day's requests are answered together:
query features, towers, the live-filtered search, candidate features and the ranker each run
once per chunk of requests instead of once per request. Every slate equals what
``GET /recommend`` answers for the same viewer at the same moment (a test holds them equal).
``load`` builds it from a ``recsys-pipeline`` (or ``recsys-train`` + ``recsys-rank``) run, with
its state as of the market's first moment. A viewer without personalisation consent
(``MarketView.consent``) gets what a viewer nobody knows gets, and their events are not folded
into the service's sessions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.market.policy import MarketView, Policy, Requests, Slates
from recsys.ranking.events import EVENT_CODE, SessionEvent, event_columns
from recsys.ranking.features import Candidates
from recsys.ranking.pairs import Pairs
from recsys.serving.consent import ANONYMOUS_USER
from recsys.serving.loading import load_trained_service
from recsys.serving.trained import TrainedLiveService, top_products

EVENT_NAME = {code: name for name, code in EVENT_CODE.items()}


class PipelinePolicy(Policy):
    name = "pipeline"

    def __init__(self, service: TrainedLiveService, *, chunk: int = 256) -> None:
        """``chunk``: requests answered together (memory: chunk x n_candidates feature rows)."""
        if chunk < 1:
            raise ValueError(f"PipelinePolicy: chunk must be >= 1, got {chunk}")
        self.service, self.chunk = service, chunk
        self._withheld: np.ndarray | None = None  # viewers without personalisation consent

    @classmethod
    def load(
        cls,
        checkpoint: str | Path,
        *,
        start_ts: int,
        ranker: str | Path | None = None,
        cache_dir: str | None = None,
        data_path: str | Path | None = None,
        chunk: int = 256,
    ) -> PipelinePolicy:
        """The pipeline of ``checkpoint`` (and ``ranker``, default the blend) serving from
        ``start_ts``: sessions and popularity from the world's events before it only.
        ``data_path``: a world folder over the same entities whose history the model reads
        instead of its training data's (e.g. everything a market has logged so far)."""
        service = load_trained_service(checkpoint, until=start_ts, ranker=ranker,
                                       cache_dir=cache_dir, data_path=data_path)  # fmt: skip
        return cls(service, chunk=chunk)

    def recommend(self, requests: Requests, market: MarketView) -> Slates:
        k, svc = requests.k, self.service
        session = np.full((len(requests), k), -1, dtype=np.int64)
        product = session.copy()
        codes = svc.vocabs["user"].encode(requests.user_id)
        personal = self._personal(requests.user_id, market)
        codes[~personal] = 0  # answered as a viewer nobody knows, with no session
        for i in np.flatnonzero(codes < 2).tolist():  # viewers the model never saw
            user = int(requests.user_id[i]) if personal[i] else ANONYMOUS_USER
            rec = svc.fallback.recommend(user, int(requests.ts[i]), k, ("product",))
            for j, item in enumerate(rec.items[:k]):
                session[i, j], product[i, j] = item.session, item.id
        known = np.flatnonzero(codes >= 2)
        for rows in np.array_split(known, -(-len(known) // self.chunk)) if len(known) else []:
            product[rows], session[rows] = self._answer(rows, codes[rows], requests)
        return Slates(session, product)

    def _personal(self, users: np.ndarray, market: MarketView) -> np.ndarray:
        """Which viewers allow personalisation (all when the market plants no consent); kept
        for ``observe``, which must not fold the others' events into session state."""
        consent = market.consent
        if consent is None or "personalisation" not in consent:
            self._withheld = np.zeros(0, dtype=np.int64)
            return np.ones(len(users), dtype=bool)
        self._withheld = consent.loc[~consent["personalisation"], "user_id"].to_numpy(np.int64)
        return ~np.isin(users, self._withheld)

    def _answer(self, rows: np.ndarray, codes: np.ndarray, requests: Requests):
        """(products, sessions) (len(rows), k) of known viewers' requests: the service's own
        steps (``TrainedLiveService.retrieve`` and its shelf and ranking steps), each run once
        for the chunk where it can be."""
        svc = self.service
        users, ts = requests.user_id[rows], requests.ts[rows]
        batch = svc.product_scorer.request_batch(codes, ts)
        q = svc.product_scorer.head_queries(batch, ["product"])["product"]  # (B, d)
        _, found = svc.retriever.search(q, ts, svc.config.n_candidates, svc.config.strategy)
        ids = [svc.candidate_ids(batch, i, found[i], svc.retriever.live_at(int(ts[i])))
               for i in range(len(rows))]  # fmt: skip
        padded = np.zeros((len(ids), max(1, max(len(x) for x in ids))), dtype=np.int64)  # (B, C)
        for i, x in enumerate(ids):
            padded[i, : len(x)] = svc.vocabs["product"].encode(x)  # 0 pads
        bonus = svc.product_scorer.request_bonus(batch, padded)  # (B, C)
        parts, pairs, session, in_session = [], [], [], []
        for i, x in enumerate(ids):
            user, now = int(users[i]), int(ts[i])
            part = svc.shelf_rows(*svc.best_candidates(x, q[i], bonus[i, : len(x)]), now)
            parts.append(part)
            pairs.append(Pairs.of_request(user, now, *part))
            session.append(svc.sessions.features(user, Candidates.products(*part[:3]), now))
            in_session.append(svc.sessions.peek(user, now) is not None)
        return self._rank(parts, pairs, np.concatenate(session), np.array(in_session), requests.k)

    def _rank(self, parts, pairs: list[Pairs], session: np.ndarray, in_session, k: int):
        """Every request's top ``k`` by its ranker (``top_products``), features and scores
        computed for the whole chunk at once."""
        svc = self.service
        merged = Pairs(*(np.concatenate([getattr(p, f) for p in pairs]) for f in
                         ("user_id", "ts", "product_id", "streamer_id", "session_id",
                          "retrieval_score")))  # fmt: skip
        features = svc.featurizer.transform(merged, session=session)
        sizes = np.array([len(p) for p in pairs])
        row_ranker = np.repeat(in_session, sizes)
        scores = np.empty(len(merged), dtype=np.float64)
        for use, ranker in ((True, svc.ranker), (False, svc.outside_session)):
            take = np.flatnonzero(row_ranker == use)
            if len(take):
                scores[take] = ranker.score(features.take(take))["score"]
        products = np.full((len(parts), k), -1, dtype=np.int64)
        sessions = products.copy()
        for i, start in enumerate(np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()):
            product, _, sess, _ = parts[i]
            top = top_products(product, scores[start : start + sizes[i]], k)
            products[i, : len(top)], sessions[i, : len(top)] = product[top], sess[top]
        return products, sessions

    def observe(self, logs: dict[str, pd.DataFrame]) -> None:
        events = logs["events"]
        if self._withheld is not None and len(self._withheld):
            events = events[~events["user_id"].isin(self._withheld)]
        cols = event_columns(events)
        events = [
            SessionEvent(ts, user, EVENT_NAME[code], session, streamer, product, value)
            for ts, user, code, session, streamer, product, value in zip(
                cols.ts_list, cols.user, cols.code, cols.session, cols.streamer, cols.product,
                cols.value, strict=True,
            )
        ]  # fmt: skip
        self.service.ingest(events)
