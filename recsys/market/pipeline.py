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
its state as of the market's first moment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.availability import in_sorted
from recsys.market.policy import MarketView, Policy, Requests, Slates
from recsys.ranking.events import EVENT_CODE, SessionEvent, event_columns
from recsys.ranking.features import Candidates
from recsys.ranking.pairs import Pairs
from recsys.serving.loading import load_trained_service
from recsys.serving.trained import TrainedLiveService

EVENT_NAME = {code: name for name, code in EVENT_CODE.items()}


class PipelinePolicy(Policy):
    name = "pipeline"

    def __init__(self, service: TrainedLiveService, *, chunk: int = 256) -> None:
        """``chunk``: requests answered together (memory: chunk x n_candidates feature rows)."""
        if chunk < 1:
            raise ValueError(f"PipelinePolicy: chunk must be >= 1, got {chunk}")
        self.service, self.chunk = service, chunk

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
        for i in np.flatnonzero(codes < 2).tolist():  # viewers the model never saw
            rec = svc.fallback.recommend(int(requests.user_id[i]), int(requests.ts[i]), k,
                                         ("product",))  # fmt: skip
            for j, item in enumerate(rec.items[:k]):
                session[i, j], product[i, j] = item.session, item.id
        known = np.flatnonzero(codes >= 2)
        for rows in np.array_split(known, -(-len(known) // self.chunk)) if len(known) else []:
            product[rows], session[rows] = self._answer(rows, codes[rows], requests)
        return Slates(session, product)

    def _answer(self, rows: np.ndarray, codes: np.ndarray, requests: Requests):
        """(products, sessions) (len(rows), k) of known viewers' requests."""
        svc = self.service
        users, ts = requests.user_id[rows], requests.ts[rows]
        batch = svc.product_scorer.request_batch(codes, ts)
        q = svc.product_scorer.head_queries(batch, ["product"])["product"]  # (B, d)
        _, found = svc.retriever.search(q, ts, svc.config.n_candidates, svc.config.strategy)
        ids = [self._retrieved(batch, i, found[i], int(ts[i])) for i in range(len(rows))]
        width = max(1, max(len(x) for x in ids))
        padded = np.zeros((len(ids), width), dtype=np.int64)  # (B, C) codes, 0 = padding
        for i, x in enumerate(ids):
            padded[i, : len(x)] = svc.vocabs["product"].encode(x)
        bonus = svc.product_scorer.request_bonus(batch, padded)  # (B, C)
        parts, pairs, session, in_session = [], [], [], []
        for i, x in enumerate(ids):
            user, now = int(users[i]), int(ts[i])
            part = self._on_shelves(x, q[i], bonus[i, : len(x)], now)
            parts.append(part)
            pairs.append(Pairs.of_request(user, now, *part))
            session.append(svc.sessions.features(user, Candidates.products(*part[:3]), now))
            in_session.append(svc.sessions.peek(user, now) is not None)
        return self._rank(parts, pairs, np.concatenate(session), np.array(in_session), requests.k)

    def _retrieved(self, batch, i: int, found: np.ndarray, now: int) -> np.ndarray:
        """Raw ids of one request's candidates: the search's, plus the live products in its
        bag of recent ones (the repeat bonus may lift them)."""
        svc = self.service
        bag = svc.vocabs["product"].decode(svc.product_scorer.request_history(batch, i))
        repeat = bag[in_sorted(bag, svc.retriever.live_at(now))]
        return np.union1d(found[found >= 0], repeat)

    def _on_shelves(self, ids: np.ndarray, q: np.ndarray, bonus: np.ndarray, now: int):
        """(product, streamer, session, retrieval score) rows of the best ``n_candidates``
        of ``ids`` on the shelves live at ``now``, as ``TrainedLiveService`` makes them."""
        svc = self.service
        vectors = svc.retriever.index.vectors(svc.retriever.index.positions(ids))
        score = vectors @ q + bonus
        order = np.lexsort((ids, -score))[: svc.config.n_candidates]
        ids, score = ids[order], score[order].astype(np.float32)
        shelf = svc.catalog.products(now)
        rows = np.flatnonzero(in_sorted(shelf.product, np.sort(ids)))
        by_id = np.argsort(ids)
        product = shelf.product[rows]
        retrieval = score[by_id][np.searchsorted(ids[by_id], product)]
        return product, shelf.streamer[rows], shelf.session[rows], retrieval

    def _rank(self, parts, pairs: list[Pairs], session: np.ndarray, in_session, k: int):
        """Every request's top ``k`` by its ranker: each product once, from its best shelf."""
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
            s = scores[start : start + sizes[i]]
            ranked = np.lexsort((product, -s))
            _, first = np.unique(product[ranked], return_index=True)
            top = ranked[np.sort(first)][:k]
            products[i, : len(top)], sessions[i, : len(top)] = product[top], sess[top]
        return products, sessions

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
