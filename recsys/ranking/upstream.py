"""Upstream scores for the ranker: the two-tower's score of each (request, candidate) pair.

The ranker's ``retrieval_score`` feature is the retrieval model's own score of the candidate,
exactly what the live service computes after its index search (inner product of the query
and candidate vectors plus the repeat bonus, ``TwoTowerRecommender.request_scores``). Each
request's query is built from everything in the world strictly before the request's time,
so offline rows see what the service would have seen.

Rows are grouped by request into a padded (requests, candidates) block of vocabulary codes
and scored in chunks of requests, which bounds memory at any number of rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.data.vocab import N_RESERVED, PAD

if TYPE_CHECKING:
    from recsys.recommenders.two_tower import TwoTowerRecommender

PAIR_COLUMNS = ("request_id", "user_id", "ts", "product_id")


def _check_pairs(pairs: pd.DataFrame) -> None:
    missing = [c for c in PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise ValueError(f"two_tower_scores: pairs lack columns {missing}")
    for name in PAIR_COLUMNS:
        if pairs[name].isna().any():
            row = int(np.flatnonzero(pairs[name].isna().to_numpy())[0])
            raise ValueError(f"two_tower_scores: pairs row {row}: field {name!r} is missing")


def _requests(pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by request, each request's first sorted row and its number of rows; a
    request must have one user and one time."""
    request = pairs["request_id"].to_numpy(np.int64)
    order = np.argsort(request, kind="stable")
    r = request[order]
    first = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    sizes = np.diff(np.r_[first, len(r)])
    for name in ("user_id", "ts"):
        values = pairs[name].to_numpy(np.int64)[order]
        same = values == np.repeat(values[first], sizes)
        if not same.all():
            row = int(order[np.flatnonzero(~same)[0]])
            raise ValueError(
                f"two_tower_scores: pairs row {row}: request {request[row]} has more than "
                f"one {name}"
            )
    return order, first, sizes


def two_tower_scores(
    recommender: TwoTowerRecommender, pairs: pd.DataFrame, chunk_requests: int = 512
) -> np.ndarray:
    """(len(pairs),) float32 two-tower product scores of ``pairs`` rows (``request_id``,
    ``user_id``, ``ts``, ``product_id``: raw ids), in row order.

    A product the model's vocabulary does not know gets NaN (the ranker reads it as "no
    retrieval score"); a viewer it does not know is still scored, from the unknown-user row
    and the viewer's history before ``ts``. ``chunk_requests`` requests are scored at a time.
    """
    _check_pairs(pairs)
    out = np.full(len(pairs), np.nan, dtype=np.float32)
    if len(pairs) == 0:
        return out
    view = recommender if recommender.head == "product" else recommender.for_head("product")
    vocabs = view.context.vocabs
    order, first, sizes = _requests(pairs)
    code = vocabs.product.encode(pairs["product_id"].to_numpy(np.int64))[order]
    users = vocabs.user.encode(pairs["user_id"].to_numpy(np.int64)[order[first]])
    ts = pairs["ts"].to_numpy(np.int64)[order[first]]
    group = np.repeat(np.arange(len(first)), sizes)  # sorted row -> request
    column = np.arange(len(order)) - np.repeat(first, sizes)  # sorted row -> padded column
    bounds = np.r_[first, len(order)]
    for lo in range(0, len(first), chunk_requests):
        hi = min(lo + chunk_requests, len(first))
        rows = slice(bounds[lo], bounds[hi])
        ids = np.full((hi - lo, int(sizes[lo:hi].max())), PAD, dtype=np.int64)  # (Q, C)
        ids[group[rows] - lo, column[rows]] = code[rows]
        scores = view.request_scores(users[lo:hi], ts[lo:hi], ids)  # (Q, C)
        out[order[rows]] = scores[group[rows] - lo, column[rows]]
    out[order[code < N_RESERVED]] = np.nan  # unknown products (OOV), never padding here
    return out
