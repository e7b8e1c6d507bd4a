"""Impression logs from a synthetic world: what a logging policy showed, and what happened.

A log answers requests. A request is a viewer at a moment on the app: a seeded sample of the
world's ``enter`` events, each moved ``1..max_delay_s`` seconds later (the viewer has just
arrived in a room; the feature code sees only events strictly before the request time).
Everything live at that moment is a candidate: every product on the shelf of a room on air
(``live_candidates``; a product on several live shelves once, from the shelf presenting it
now, else the earliest session).

The logging policy (``LoggingPolicy``) shows ``k`` candidates in order, drawn by
Plackett-Luce sampling (Gumbel top-k) with weights ``(1 + recent clicks) ** popularity_power``
over the clicks the product got in the ``popularity_window_s`` before the request: power 0 is
the uniform random policy. Each shown row records its ``propensity``, the Plackett-Luce
probability of choosing that item at that position given the items above it (the product over
a request's rows is the probability of the whole list; under the uniform policy the chance of
an item being at a given position is ``1 / n_candidates``, also recorded).

Outcomes follow the world's answer key (``response.py``), the in-room behaviour model applied
to a card: with ``I`` interest in the category, ``T'`` trust in the room's streamer (all of it
while the streamer presents the product, ``shelf_trust_share`` of it otherwise)::

    rate    = 0.5 (1 + T') (0.05 + I) (0.5 + brand match) attr_factor price_fit [x on_show_boost]
    P(click at position j) = (1 - exp(-exposure_minutes * rate)) / log2(j + 2)
    P(conversion | click)  = claim P_buy(coupon) + (1 - claim) P_buy(0)

(``P_buy`` = ``truth.purchase_probability``, ``claim`` = ``truth.claim_probability`` when a
coupon drop is live on the product, else 0). Only product cards are logged (``kind`` is
'product'); rooms as cards are not modelled. Seed streams: ``SeedSequence(seed,
spawn_key=(k,))`` with k = 0 requests, 1 policy, 2 outcomes; everything is vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.data.availability import gather_rows, live_sets
from recsys.data.timeline import KeyedIntervals, KeyedTimeline
from recsys.simulation.response import ResponseConfig, WorldTruth, simulate_outcomes

REQUESTS, POLICY, OUTCOMES = 0, 1, 2
# Requests whose live candidates are built at once: every (request, live product) pair of a
# window at once does not fit in memory on the medium world (~106k room entries x ~1,450
# products); chunks after the first draw from their own streams.
CHUNK_REQUESTS = 20_000
IMPRESSION_COLUMNS = (
    "request_id", "user_id", "ts", "kind", "product_id", "streamer_id", "session_id",
    "position", "propensity", "n_candidates", "click", "conversion",
)  # fmt: skip


@dataclass(frozen=True)
class LoggingPolicy:
    """A randomised policy showing ``k`` items (uniform when ``popularity_power`` is 0)."""

    k: int = 10
    popularity_power: float = 0.0
    popularity_window_s: int = 24 * 3600

    def __post_init__(self) -> None:
        if self.k < 1 or self.popularity_power < 0 or self.popularity_window_s <= 0:
            raise ValueError(f"LoggingPolicy: need k >= 1, power >= 0, window > 0; got {self}")


@dataclass(frozen=True)
class ImpressionLog:
    requests: pd.DataFrame  # request_id, user_id, ts, session_id, streamer_id (room entered)
    candidates: pd.DataFrame  # request_id, product_id, streamer_id, session_id, on_show
    impressions: pd.DataFrame  # IMPRESSION_COLUMNS
    n_candidates: int  # candidate rows, also when ``candidates`` was not kept


def _rng(seed: int, stream: int, part: int = 0) -> np.random.Generator:
    key = (stream,) if part == 0 else (stream, part)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def request_points(
    events: pd.DataFrame,
    *,
    n_requests: int | None,
    seed: int = 0,
    start_ts: int | None = None,
    end_ts: int | None = None,
    max_delay_s: int = 60,
) -> pd.DataFrame:
    """A seeded sample of viewers just after entering a room, ``start_ts <= enter < end_ts``.

    ``n_requests`` None takes every enter in the window. Request ids are 0.. in time order.
    """
    enter = events.loc[events["event_type"] == "enter"]
    ts = enter["ts"].to_numpy(np.int64)
    keep = np.ones(len(ts), dtype=bool)
    if start_ts is not None:
        keep &= ts >= start_ts
    if end_ts is not None:
        keep &= ts < end_ts
    rows = np.flatnonzero(keep)
    rng = _rng(seed, REQUESTS)
    if n_requests is not None:
        if n_requests > len(rows):
            raise ValueError(f"request_points: {n_requests} requests asked, {len(rows)} enters")
        rows = np.sort(rng.choice(rows, size=n_requests, replace=False))
    delay = rng.integers(1, max_delay_s + 1, len(rows))
    frame = pd.DataFrame(
        {
            "user_id": enter["user_id"].to_numpy(np.int64)[rows],
            "ts": ts[rows] + delay,
            "session_id": enter["session_id"].to_numpy(np.int64)[rows],
            "streamer_id": enter["streamer_id"].to_numpy(np.int64)[rows],
        }
    )
    frame = frame.sort_values(["ts", "user_id"], kind="stable", ignore_index=True)
    frame.insert(0, "request_id", np.arange(len(frame), dtype=np.int64))
    return frame


def live_candidates(
    live_sessions: pd.DataFrame, showcase: pd.DataFrame, requests: pd.DataFrame
) -> pd.DataFrame:
    """Every product on a live shelf at each request's time, once per (request, product),
    grouped by request in the order of ``requests``."""
    sessions = live_sessions.sort_values("session_id", kind="stable")
    sid = sessions["session_id"].to_numpy(np.int64)
    ts = requests["ts"].to_numpy(np.int64)
    ptr, live = live_sets(np.arange(len(sid)), sessions["start_ts"], sessions["end_ts"], ts)
    pair_request = np.repeat(np.arange(len(requests)), np.diff(ptr))  # (request, live session)
    showing = _showing(showcase, sid[live], ts[pair_request])
    shelf = showcase[["session_id", "product_id"]].drop_duplicates()
    shelf_pos = np.searchsorted(sid, shelf["session_id"].to_numpy(np.int64))
    order = np.argsort(shelf_pos, kind="stable")
    shelf_ptr = np.searchsorted(shelf_pos[order], np.arange(len(sid) + 1))
    products = shelf["product_id"].to_numpy(np.int64)[order]
    rptr, rows = gather_rows(shelf_ptr, np.arange(len(products)), live)
    pair = np.repeat(np.arange(len(live)), np.diff(rptr))  # shelf row -> (request, session)
    product = products[rows]
    on_show = product == showing[pair]
    request = pair_request[pair]
    return (
        pd.DataFrame(
            {
                "request_id": requests["request_id"].to_numpy(np.int64)[request],
                "product_id": product,
                "streamer_id": sessions["streamer_id"].to_numpy(np.int64)[live[pair]],
                "session_id": sid[live[pair]],
                "on_show": on_show,
            }
        )
        .iloc[_one_shelf_each(request, product, on_show)]
        .reset_index(drop=True)
    )


def _showing(showcase: pd.DataFrame, session: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The product each session presents at each time (-1 between slots)."""
    slots = KeyedIntervals(showcase["session_id"], showcase["start_ts"], showcase["end_ts"])
    row = slots.covering(session, ts)
    return np.where(row >= 0, showcase["product_id"].to_numpy(np.int64)[np.maximum(row, 0)], -1)


def _one_shelf_each(request: np.ndarray, product: np.ndarray, on_show: np.ndarray) -> np.ndarray:
    """Rows to keep so each (request, product) appears once: the shelf presenting it, else
    the first (rows come in session order within a request). Keeps the row order."""
    code = request * (int(product.max(initial=0)) + 1) + product
    order = np.argsort(2 * code + ~on_show, kind="stable")
    return np.sort(order[_first_of_runs(code[order])])


def _first_of_runs(*columns: np.ndarray) -> np.ndarray:
    """Mask of rows that differ from the previous row in any of the (sorted) columns."""
    change = np.zeros(len(columns[0]), dtype=bool)
    change[:1] = True
    for col in columns:
        change[1:] |= col[1:] != col[:-1]
    return change


def _group_starts(group: np.ndarray) -> np.ndarray:
    """Index of the first row of each row's group (rows sorted by group)."""
    return np.maximum.accumulate(np.where(_first_of_runs(group), np.arange(len(group)), 0))


def _order_within_groups(group: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Rows by ascending ``group`` (dense ranks) and descending ``score`` within a group.

    One float sort of ``group + squashed score`` instead of a two-key lexsort, several times
    faster at millions of rows; the squashed score lies in [0, 0.5], far above float64
    resolution at any realistic number of groups.
    """
    squashed = 0.5 / (1.0 + np.exp(np.clip(score, -700, 700)))  # high score -> near 0
    return np.argsort(group + squashed, kind="stable")


def _request_rank(requests: pd.DataFrame, request_id: pd.Series) -> np.ndarray:
    """Row of ``requests`` each request id names; a clear error for an unknown one."""
    index = pd.Index(requests["request_id"].to_numpy(np.int64))
    if not index.is_unique:
        raise ValueError(f"requests: request_id {index[index.duplicated()][0]} repeats")
    rank = index.get_indexer(request_id.to_numpy(np.int64))
    if np.any(rank < 0):
        row = int(np.flatnonzero(rank < 0)[0])
        raise ValueError(f"candidates row {row}: request_id {request_id.iloc[row]} not in requests")
    return rank


def choose_lists(
    candidates: pd.DataFrame,
    requests: pd.DataFrame,
    events: pd.DataFrame,
    policy: LoggingPolicy,
    seed: int = 0,
    *,
    part: int = 0,
) -> pd.DataFrame:
    """The policy's lists: candidate rows with ``ts``, ``position``, ``propensity`` and
    ``n_candidates``, sorted by (request, position); ``part``: the chunk of requests, each
    drawing from its own stream."""
    rank = _request_rank(requests, candidates["request_id"])
    ts = requests["ts"].to_numpy(np.int64)[rank]
    log_w = np.zeros(len(candidates))
    if policy.popularity_power > 0:
        clicks = events.loc[events["event_type"] == "click"]
        timeline = KeyedTimeline(clicks["product_id"].to_numpy(np.int64), clicks["ts"])
        product = candidates["product_id"].to_numpy(np.int64)
        recent = timeline.sum_between(product, ts - policy.popularity_window_s, ts)
        log_w = policy.popularity_power * np.log1p(recent)
    gumbel = -np.log(-np.log(_rng(seed, POLICY, part).random(len(candidates))))
    order = _order_within_groups(rank, log_w + gumbel)  # Gumbel top-k = Plackett-Luce draws
    start = _group_starts(rank[order])
    shown = order[np.arange(len(order)) - start < policy.k]
    w = np.exp(log_w - log_w.max(initial=0.0))
    total = np.bincount(rank, weights=w, minlength=len(requests))
    out = candidates.iloc[shown].reset_index(drop=True)
    out["ts"] = ts[shown]
    first = _group_starts(rank[shown])
    out["position"] = np.arange(len(shown)) - first
    above = np.cumsum(w[shown]) - w[shown]
    remaining = total[rank[shown]] - (above - above[first] if len(shown) else above)
    out["propensity"] = np.minimum(w[shown] / remaining, 1.0)
    out["n_candidates"] = np.bincount(rank, minlength=len(requests))[rank[shown]]
    return out


def draw_outcomes(
    truth: WorldTruth,
    shown: pd.DataFrame,
    response: ResponseConfig | None = None,
    seed: int = 0,
    part: int = 0,
) -> pd.DataFrame:
    """Shown rows with ``click`` and ``conversion`` drawn from their true probabilities."""
    expected = simulate_outcomes(truth, shown, response)
    u = _rng(seed, OUTCOMES, part).random((2, len(shown)))
    click = u[0] < expected["p_click"].to_numpy()
    out = shown.copy()
    out["click"] = click.astype(np.int8)
    out["conversion"] = (click & (u[1] < expected["p_conversion"].to_numpy())).astype(np.int8)
    return out


def impression_log(
    truth: WorldTruth,
    tables,
    *,
    n_requests: int | None,
    policy: LoggingPolicy | None = None,
    response: ResponseConfig | None = None,
    seed: int = 0,
    start_ts: int | None = None,
    end_ts: int | None = None,
    keep_candidates: bool = True,
) -> ImpressionLog:
    """Requests, their live candidates and the logged impressions of one world
    (``tables``: a ``LiveCommerceTables``; ``truth``: ``WorldTruth`` of the same world).

    Requests are served ``CHUNK_REQUESTS`` at a time; ``keep_candidates=False`` keeps only the
    count of candidate rows (a training window's every (request, live product) pair is large)."""
    policy = policy or LoggingPolicy()
    requests = request_points(tables.events, n_requests=n_requests, seed=seed,
                              start_ts=start_ts, end_ts=end_ts)  # fmt: skip
    kept, logged, n_candidates = [], [], 0
    for part, start in enumerate(range(0, max(len(requests), 1), CHUNK_REQUESTS)):
        chunk = requests.iloc[start : start + CHUNK_REQUESTS]
        candidates = live_candidates(tables.live_sessions, tables.showcase, chunk)
        shown = choose_lists(candidates, chunk, tables.events, policy, seed, part=part)
        users = chunk.set_index("request_id")["user_id"].reindex(shown["request_id"])
        shown["user_id"] = users.to_numpy(np.int64)
        shown["kind"] = "product"
        logged.append(draw_outcomes(truth, shown, response, seed, part)[list(IMPRESSION_COLUMNS)])
        n_candidates += len(candidates)
        kept.append(candidates if keep_candidates else candidates.iloc[:0])
    impressions = pd.concat(logged, ignore_index=True)
    validate_impressions(impressions)
    return ImpressionLog(requests, pd.concat(kept, ignore_index=True), impressions, n_candidates)


def _fail(frame: pd.DataFrame, bad: np.ndarray, field: str, why: str) -> None:
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"impressions row {row} (request {frame['request_id'].iloc[row]}): "
                         f"field {field!r} {why}")  # fmt: skip


def validate_impressions(impressions: pd.DataFrame, candidates: pd.DataFrame | None = None) -> None:
    """Raise on a malformed log, naming the first bad row and field.

    Positions of a request are 0..n-1, propensities in (0, 1], clicks and conversions 0/1 with
    no conversion without a click, one row per (request, product), and, given the candidate
    sets, every shown row is one of its request's candidates.
    """
    missing = [c for c in IMPRESSION_COLUMNS if c not in impressions.columns]
    if missing:
        raise ValueError(f"impressions: missing columns {missing}")
    f = impressions.sort_values(["request_id", "position"], kind="stable", ignore_index=True)
    start = _group_starts(f["request_id"].to_numpy(np.int64))
    _fail(f, f["position"].to_numpy() != np.arange(len(f)) - start, "position",
          "is not 0..n-1 within its request")  # fmt: skip
    p = f["propensity"].to_numpy(np.float64)
    _fail(f, ~((p > 0) & (p <= 1)), "propensity", "is outside (0, 1]")
    for field in ("click", "conversion"):
        _fail(f, ~np.isin(f[field].to_numpy(), (0, 1)), field, "is not 0 or 1")
    _fail(f, f["conversion"].to_numpy() > f["click"].to_numpy(), "conversion", "without a click")
    _fail(f, ~f["kind"].isin(("product", "room")).to_numpy(), "kind", "is not 'product' or 'room'")
    request, product = f["request_id"].to_numpy(np.int64), f["product_id"].to_numpy(np.int64)
    order = np.lexsort((product, request))
    repeat = ~_first_of_runs(request[order], product[order])
    _fail(f, np.isin(np.arange(len(f)), order[repeat]), "product_id", "repeats within its request")
    if candidates is not None:
        _fail(f, ~_is_candidate(f, candidates), "product_id",
              "is not among its request's live candidates")  # fmt: skip


def _is_candidate(rows: pd.DataFrame, candidates: pd.DataFrame) -> np.ndarray:
    """Whether each (request, product, session) row is a candidate row (hash look-ups)."""
    fields = ("request_id", "product_id", "session_id")
    code = np.zeros(len(rows) + len(candidates), dtype=np.int64)
    for field in fields:
        values = np.concatenate(
            [rows[field].to_numpy(np.int64), candidates[field].to_numpy(np.int64)]
        )
        codes, uniques = pd.factorize(values)
        code = code * len(uniques) + codes  # < 2**63 for up to ~2e6 distinct values per field
    return pd.Series(code[: len(rows)]).isin(code[len(rows) :]).to_numpy()
