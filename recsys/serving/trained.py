"""``TrainedLiveService``: the full request flow of a trained pipeline behind the HTTP service.

For a known viewer at ``now``::

    products: two-tower query -> FAISS search among products on a live shelf (top
              ``n_candidates`` by inner product, plus the live products in the viewer's recent
              bags, which the repeat bonus may lift) -> exact two-tower score (inner product +
              repeat bonus) as ``retrieval_score`` -> one row per live shelf showing each
              product -> candidate features (session block from the live ``SessionStore``,
              history features from the tables the service started with) -> ``Ranker`` (ESMM
              or blend) -> top-k, a product offered once from its best shelf, with reason codes.
    rooms:    every live room scored by the two-tower room head, its tower reading the product
              each room presents (what a room is changes minute by minute, so room vectors
              are recomputed once per minute of the clock), plus the fallback's session boosts
              (``Boosts.room``).

A viewer the model has never seen gets the ``PopularityLiveService`` ranking, flagged
``cold_start``. The learned ranker is trained on impressions shown to viewers who just
entered a room; a known viewer outside any live session (a home-feed request) is outside that
domain (e.g. minutes since the last event far beyond anything it saw), so those requests are
ranked by the transparent blend instead. Events posted to the service update the session
store (and the fallback's popularity); the two-tower's history bags and the ranker's history
features (trust, price profile, recent room popularity) read the tables loaded at start.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.core import RequestScorer
from recsys.data.availability import in_sorted, sorted_unique
from recsys.data.vocab import Vocab
from recsys.ranking.candidate_features import CandidateFeaturizer
from recsys.ranking.events import SessionEvent
from recsys.ranking.features import Candidates
from recsys.ranking.pairs import Pairs
from recsys.ranking.ranker import Ranker
from recsys.ranking.store import SessionStore
from recsys.retrieval import LiveRetriever
from recsys.serving.fallback import PopularityLiveService
from recsys.serving.live import LiveCatalog, LiveRooms
from recsys.serving.protocol import (
    ITEM_KINDS,
    Recommendation,
    RecommendedItem,
    RecommenderService,
    check_request,
)

HEAD = {"room": "streamer", "product": "product"}


def top_products(product: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of one request's ``k`` best products by the ranker's ``scores`` (ties: lower
    product id), each product once, from its best shelf."""
    # Rank only the rows scoring at least the 4k-th best row (ties included, so the order of
    # those is the full ranking's prefix); all rows when they hold fewer than k products.
    out = _distinct_best(product, scores, 4 * k, k)
    if len(out) < k and 4 * k < len(scores):
        out = _distinct_best(product, scores, len(scores), k)
    return out


def _distinct_best(product: np.ndarray, scores: np.ndarray, head: int, k: int) -> np.ndarray:
    rows = None
    if head < len(scores):
        negated = -scores
        rows = np.flatnonzero(negated <= np.partition(negated, head - 1)[head - 1])
    ranked = (
        np.lexsort((product, -scores))
        if rows is None
        else rows[np.lexsort((product[rows], -scores[rows]))]
    )
    seen: set[int] = set()
    out = []
    # Walk down the ranking until k distinct products: a few more rows than k, not all of them.
    for row, p in zip(ranked.tolist(), product[ranked].tolist(), strict=True):
        if p not in seen:
            seen.add(p)
            out.append(row)
            if len(out) == k:
                break
    return np.array(out, dtype=np.int64)


@dataclass(frozen=True)
class FlowConfig:
    n_candidates: int = 500  # products retrieved per request, then ranked
    strategy: str = "auto"  # LiveRetriever strategy

    def __post_init__(self) -> None:
        if self.n_candidates < 1:
            raise ValueError(f"FlowConfig.n_candidates must be >= 1, got {self.n_candidates}")


class TrainedLiveService(RecommenderService):
    """Retrieval by a trained request scorer (the two-tower) over a live-filtered index,
    candidate features and a ranker."""

    def __init__(
        self,
        *,
        model: RequestScorer,
        vocabs: dict[str, Vocab],
        products: LiveRetriever,
        catalog: LiveCatalog,
        featurizer: CandidateFeaturizer,
        ranker: Ranker,
        fallback: PopularityLiveService,
        outside_session: Ranker | None = None,
        config: FlowConfig | None = None,
        facts: dict | None = None,
    ) -> None:
        """``outside_session``: the ranker of viewers with no live session, when ``ranker``
        was only trained on viewers in a room (the learned ranker's impression logs are)."""
        self.product_scorer = model.for_head("product")
        self.room_scorer = model.for_head("streamer")
        self.vocabs, self.retriever, self.catalog = vocabs, products, catalog
        self.featurizer, self.ranker, self.fallback = featurizer, ranker, fallback
        self.outside_session = outside_session or ranker
        self.sessions: SessionStore = fallback.sessions
        self.config = config or FlowConfig()
        self.facts = dict(facts or {})
        self._search_lock = threading.Lock()  # LiveRetriever caches per-segment state
        self._rooms_lock = threading.Lock()
        self._room_cache: tuple[int, np.ndarray] | None = None
        self._live: tuple[int, np.ndarray] | None = None

    # -- RecommenderService ------------------------------------------------------------------

    def recommend(
        self, user: int, now: int, k: int, kinds: Sequence[str] = ITEM_KINDS
    ) -> Recommendation:
        check_request(k, kinds)
        code = int(self.vocabs["user"].encode(np.array([user], dtype=np.int64))[0])
        if code < 2:
            return self.fallback.recommend(user, now, k, kinds)
        # One set of query features (bags, context), pooled once, serves both heads' towers.
        batch = self.product_scorer.request_batch(np.array([code]), np.array([now]))
        heads = [HEAD[kind] for kind in ITEM_KINDS if kind in kinds]
        queries = {h: q[0] for h, q in self.product_scorer.head_queries(batch, heads).items()}
        items: list[RecommendedItem] = []
        if "room" in kinds:
            items += self._rank_rooms(user, batch, queries["streamer"], now, k)
        if "product" in kinds:
            items += self._rank_products(user, batch, queries["product"], now, k)
        return Recommendation(user, now, False, items)

    def ingest(self, events: Sequence[SessionEvent]) -> int:
        return self.fallback.ingest(events)

    def health(self, now: int) -> dict:
        return {
            **self.fallback.health(now),
            "recommender": f"two-tower + {self.ranker.mode} ranker",
            "outside_session": f"{self.outside_session.mode} ranker",
            "index_size": len(self.retriever.index),
            "n_candidates": self.config.n_candidates,
            **self.facts,
        }

    # -- products ----------------------------------------------------------------------------

    def retrieve(
        self, batch, now: int, q: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(raw product ids, two-tower scores) of up to ``n_candidates`` live products for one
        request's query features (and its product query ``q`` (d,), when computed), best first."""
        scorer = self.product_scorer
        q = scorer.request_queries(batch) if q is None else q[None, :]  # (1, d)
        with self._search_lock:
            _, found = self.retriever.search(q, now, self.config.n_candidates, self.config.strategy)
            if self._live is None or self._live[0] != now:  # requests in one second share it
                self._live = (now, self.retriever.live_at(now))
            live = self._live[1]
        ids = self.candidate_ids(batch, 0, found[0], live)
        bonus = scorer.request_bonus(batch, self.vocabs["product"].encode(ids))[0]
        return self.best_candidates(ids, q[0], bonus)

    def candidate_ids(self, batch, row: int, found: np.ndarray, live: np.ndarray) -> np.ndarray:
        """Raw ids of request ``row``'s candidates: what the search ``found`` (-1 pads) and
        the ``live`` products in its bag of recent ones (the repeat bonus may lift them)."""
        bag = self.vocabs["product"].decode(self.product_scorer.request_history(batch, row))
        return sorted_unique(np.concatenate((found[found >= 0], bag[in_sorted(bag, live)])))

    def best_candidates(
        self, ids: np.ndarray, q: np.ndarray, bonus: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``n_candidates`` of ``ids`` by exact two-tower score (inner product with the
        query ``q`` (d,) plus their ``bonus``), ties by lower id."""
        vectors = self.retriever.index.vectors(self.retriever.index.positions(ids))
        score = vectors @ q + bonus
        if len(ids) > 1 and bool((ids[1:] > ids[:-1]).all()):  # candidate_ids' order
            order = np.argsort(-score, kind="stable")  # ties keep the lower id first
        else:
            order = np.lexsort((ids, -score))
        order = order[: self.config.n_candidates]
        return ids[order], score[order].astype(np.float32)

    def shelf_rows(self, ids: np.ndarray, score: np.ndarray, now: int):
        """(product, streamer, session, retrieval score) of every live shelf at ``now`` that
        shows one of the retrieved ``ids`` (scores beside them)."""
        shelf = self.catalog.products(now)
        rows = shelf.rows_of(ids)
        product = shelf.product[rows]
        by_id = np.argsort(ids)
        retrieval = score[by_id][np.searchsorted(ids[by_id], product)]
        return product, shelf.streamer[rows], shelf.session[rows], retrieval

    def _rank_products(self, user: int, batch, q, now: int, k: int) -> list[RecommendedItem]:
        product, streamer, session_id, retrieval = self.shelf_rows(*self.retrieve(batch, now, q),
                                                                   now)  # fmt: skip
        if len(product) == 0:
            return []
        pairs = Pairs.of_request(user, now, product, streamer, session_id, retrieval)
        cands = Candidates.products(product, streamer, session_id)
        session = self.sessions.features(user, cands, now)
        features = self.featurizer.transform(pairs, session=session)
        in_session = self.sessions.peek(user, now) is not None
        ranker = self.ranker if in_session else self.outside_session
        scores = ranker.score(features)["score"]
        top = top_products(product, scores, k)
        reasons = ranker.reasons.codes(features.take(top))
        return [
            RecommendedItem(
                kind="product",
                id=int(product[i]),
                score=float(scores[i]),
                reasons=reasons[j],
                streamer=int(streamer[i]),
                session=int(session_id[i]),
            )
            for j, i in enumerate(top.tolist())
        ]

    # -- rooms -------------------------------------------------------------------------------

    def room_vectors(self, now: int) -> np.ndarray:
        """(n_streamers, d) room tower output, each room reading what it shows at the start of
        ``now``'s minute; recomputed once per minute."""
        minute = now // 60
        with self._rooms_lock:
            cached = self._room_cache
            if cached is None or cached[0] != minute:
                ids = np.arange(self.room_scorer.n_entities())
                cached = (minute, self.room_scorer.entity_vectors(ids, minute * 60))
                self._room_cache = cached
        return cached[1]

    def _rank_rooms(self, user: int, batch, q, now: int, k: int) -> list[RecommendedItem]:
        def two_tower(rooms: LiveRooms) -> np.ndarray:
            codes = self.vocabs["streamer"].encode(rooms.streamer)
            bonus = self.room_scorer.request_bonus(batch, codes)[0]
            return self.room_vectors(now)[codes] @ q + bonus

        return self.fallback.rank_rooms(user, now, k, base=two_tower)
