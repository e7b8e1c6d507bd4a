"""Two-tower scores of requests at their own times: what ranking and serving ask of a model.

``RequestScoring`` is part of ``TwoTowerRecommender`` (``recsys.recommenders.two_tower``),
kept apart because it serves one request at a time on the hot path: query features of
(user, time) pairs from everything before each time, the query embeddings of several heads
pooled once, the sparse repeat bonus of given candidates (spread in numpy, where torch's cost
per op would dominate), and candidate vectors of rooms as their streamers show at a time. It
reads the recommender's ``model``, ``head``, ``context``, ``world``, ``_builders``,
``_scoring_builder``, ``_run`` and ``candidate_embeddings``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from recsys.data.timeline import distinct
from recsys.inputs.two_tower import TwoTowerBatch

__all__ = ["RequestScoring"]


def _spread(
    entity: np.ndarray, keys: np.ndarray, values: np.ndarray, width: int, n_rows: int
) -> np.ndarray:
    """(n_rows, C) bonus of candidates looking up ``entity`` (C,) in sparse bonuses keyed
    ``row * width + entity`` (ascending unique keys: each cell's key is searched once)."""
    if not len(keys):
        return np.zeros((n_rows, len(entity)), dtype=np.float32)
    cell = np.arange(n_rows)[:, None] * width + entity[None, :]  # (n_rows, C)
    pos = np.minimum(np.searchsorted(keys, cell), len(keys) - 1)
    return np.where(keys[pos] == cell, values[pos], np.float32(0))


class RequestScoring:
    """Request-time scoring of a trained two-tower recommender (a mixin of it)."""

    def request_batch(self, users: np.ndarray, ts: np.ndarray) -> TwoTowerBatch:
        """Query features of (user, time) requests (vocabulary codes), each from everything in
        the world strictly before its own time."""
        if self.context is None or self.model is None:
            raise RuntimeError("two_tower: request scoring needs a trained model over a world")
        users = np.asarray(users, dtype=np.int64)
        ts = np.broadcast_to(np.asarray(ts, dtype=np.int64), users.shape)
        builder = self._scoring_builder(int(ts.max()) if len(ts) else 0)
        return TwoTowerBatch.from_features(self.head, builder.features(users, ts))

    def request_queries(self, batch: TwoTowerBatch) -> np.ndarray:
        """(Q, d) float32 query embeddings of a request batch, divided by the temperature: their
        inner product with ``candidate_embeddings`` is the score without the repeat bonus."""
        return self.head_queries(batch, (self.head,))[self.head]

    def head_queries(self, batch: TwoTowerBatch, heads: Sequence[str]) -> dict[str, np.ndarray]:
        """``request_queries`` of several heads, pooling the query features once."""

        def run(device):
            b = batch.to(device)
            pooled = self.model.query_input(b)
            t = self.model.temperature.float()
            return {h: (self.model.query(b, h, pooled).float() / t).cpu().numpy() for h in heads}

        return self._run(run)

    def request_bonus(self, batch: TwoTowerBatch, ids: np.ndarray) -> np.ndarray:
        """(Q, C) float32 repeat bonus of each request for candidates ``ids`` (codes, (Q, C)
        per request or (C,) shared), scaled as in ``score``."""
        ids = np.asarray(ids, dtype=np.int64)
        shared, rows = distinct(ids.ravel())
        rows = rows.reshape(ids.shape)

        def run(device):
            cand = torch.from_numpy(shared).to(device)
            parts = self.model.bonus_inputs(batch.to(device), self.head, cand)
            scale = self.model.bonus_scale(self.head).float().cpu().numpy()
            return [
                (e.cpu().numpy(), s.keys.cpu().numpy(), s.values.float().cpu().numpy(), s.width)
                for e, s in parts
            ], scale

        parts, scale = self._run(run)
        # The model's pair_bonus, spread in numpy: torch's cost per op dominates at one request.
        bonus = np.zeros((batch.size, len(shared)), dtype=np.float32)
        for entity, keys, values, width in parts:
            bonus = bonus + _spread(entity, keys, values, width, batch.size)
        bonus = bonus * scale
        if ids.ndim == 1:
            return bonus[:, rows]
        return np.take_along_axis(bonus, rows, axis=1)

    def request_history(self, batch: TwoTowerBatch, row: int = 0) -> np.ndarray:
        """Codes of this head's entities in request ``row``'s bag of recent ones."""
        bag = (batch.product_entity if self.head == "product" else batch.room_entity)[row].numpy()
        return bag[bag >= 2]

    def n_entities(self) -> int:
        return self.model.n_entities(self.head)

    def request_scores(self, users: np.ndarray, ts: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """(Q, C) float32 scores, exactly as ``score`` ranks, of candidates ``ids`` ((Q, C) or
        (C,) codes) for (user, time) requests; rooms are embedded with the product each
        streamer showed last before the request."""
        batch = self.request_batch(users, ts)
        ids = np.asarray(ids, dtype=np.int64)
        per_request = np.broadcast_to(ids, (len(batch.user), ids.shape[-1]))
        q = self.request_queries(batch)  # (Q, d)
        out = np.empty(per_request.shape, dtype=np.float32)
        for i, t in enumerate(np.asarray(ts, dtype=np.int64).reshape(-1)):
            if self.head == "streamer" and self.world is not None:
                c = self.entity_vectors(per_request[i], t)
            else:
                c = self._product_vectors()[per_request[i]]
            out[i] = c @ q[i]
        return out + self.request_bonus(batch, per_request)

    def _product_vectors(self) -> np.ndarray:
        cached = self._builders.vectors
        if cached is None or cached[0] is not self.model or cached[1] != self.head:
            cached = (self.model, self.head, self.candidate_embeddings(self.head))
            self._builders.vectors = cached
        return cached[2]

    def entity_vectors(self, ids: np.ndarray, at: int) -> np.ndarray:
        """(C, d) float32 candidate embeddings of ``ids`` (codes) at time ``at``: a room reads
        the product its streamer shows at ``at`` (world head "streamer")."""
        if self.head != "streamer" or self.world is None:
            return self._product_vectors()[np.asarray(ids, dtype=np.int64)]
        showing = self.world.showcase.showing(ids, np.full(len(ids), at))

        def run(device):
            t = lambda a: torch.from_numpy(np.array(a, dtype=np.int64)).to(device)  # noqa: E731
            return self.model.candidates(self.head, t(ids), t(showing)).float().cpu().numpy()

        return self._run(run)
