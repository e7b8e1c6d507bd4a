"""Offline comparison of rankings on a synthetic world, scored by the world's answer key.

Every live candidate of a set of requests (``eval_pairs``) is ranked by each named ordering,
a score per candidate row (or an already shown list, such as a logging policy's); the top-k
of each request is scored by the world's true response (``simulate_outcomes``: expected
clicks and conversions with position bias) and by NDCG@k against the true position-free
gains (``true_gains``). ``compare_orderings`` reports, per ordering, list-level CTR, CVR and
CTCVR and mean NDCG@k with 95 % intervals over requests, and paired differences (same
requests) against a reference ordering and between named pairs::

    pairs = eval_pairs(truth, tables, requests)
    result = compare_orderings(truth, requests, pairs, {"two-tower": tt, "ranker": score},
                               reference="two-tower")
    print(lists_markdown(result))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from recsys.data.timeline import KeyedTimeline
from recsys.ranking.candidate_features import FeatureMatrix
from recsys.ranking.ranker import BlendWeights, Ranker
from recsys.ranking.reasons import ReasonRules
from recsys.simulation.config import SECONDS_PER_DAY
from recsys.simulation.impressions import live_candidates
from recsys.simulation.response import (
    WorldTruth,
    compare_outcomes,
    mean_interval,
    ndcg_per_request,
    outcome_summary,
    simulate_outcomes,
    true_gains,
)

K = 10
KOL_FEATURES = ("streamer_trust", "trusted_streamer", "kol_presenting_now", "followed_streamer")
KEYS = ["request_id", "product_id", "session_id"]
RATES = ("ctr", "cvr", "ctcvr")


def without_kol(weights: BlendWeights) -> BlendWeights:
    """The blend with the KOL features' weights set to 0."""
    return BlendWeights(tuple((n, 0.0 if n in KOL_FEATURES else w) for n, w in weights.weights))


def popularity_scores(tables, rows: pd.DataFrame, window_s: int = SECONDS_PER_DAY) -> np.ndarray:
    """Clicks each row's product got in the ``window_s`` before the row's ``ts``."""
    clicks = tables.events.loc[tables.events["event_type"] == "click"]
    timeline = KeyedTimeline(clicks["product_id"].to_numpy(np.int64), clicks["ts"])
    ts = rows["ts"].to_numpy(np.int64)
    return timeline.sum_between(rows["product_id"].to_numpy(np.int64), ts - window_s, ts)


def top_by(requests: pd.DataFrame, candidates: pd.DataFrame, score, k: int = K) -> pd.DataFrame:
    """Top-``k`` candidate rows of each request by a plain score (the ``Ranker``'s tie rule:
    lower product id first; NaN scores last)."""
    score = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)
    scores = FeatureMatrix(("score",), score[:, None].astype(np.float32))
    ranker = Ranker.blended(BlendWeights((("score", 1.0),)), k=k, reasons=ReasonRules(()))
    return ranker.rank(requests, candidates, scores)


def eval_pairs(truth: WorldTruth, tables, requests: pd.DataFrame) -> pd.DataFrame:
    """Every live candidate of each request (``live_candidates``) with the request's
    ``user_id`` and ``ts`` and the candidate's true ``gain``."""
    candidates = live_candidates(tables.live_sessions, tables.showcase, requests)
    pairs = candidates.merge(requests[["request_id", "user_id", "ts"]], on="request_id")
    pairs["gain"] = true_gains(truth, pairs)
    return pairs


class Orderings:
    """Top-k lists of named orderings over the same requests, with their true outcomes."""

    def __init__(
        self, truth: WorldTruth, requests: pd.DataFrame, pairs: pd.DataFrame, k: int = K
    ) -> None:
        if "gain" not in pairs.columns:
            raise ValueError("Orderings: pairs need a 'gain' column (eval_pairs)")
        self.truth, self.requests, self.pairs, self.k = truth, requests, pairs, k
        self.outcomes: dict[str, pd.DataFrame] = {}
        self.ndcg: dict[str, pd.Series] = {}

    def add(self, name: str, ordering: np.ndarray | pd.DataFrame) -> None:
        """``ordering``: a score per ``pairs`` row, or shown rows with a ``position``."""
        if isinstance(ordering, pd.DataFrame):
            shown = ordering
        elif len(ordering) != len(self.pairs):
            n, rows = len(ordering), len(self.pairs)
            raise ValueError(f"ordering {name!r}: {n} scores for {rows} rows")
        else:
            shown = top_by(self.requests, self.pairs, ordering, self.k)
        outcomes = simulate_outcomes(self.truth, shown)
        gain = self.pairs[[*KEYS, "gain"]]
        ranked = outcomes.drop(columns="gain", errors="ignore").merge(gain, on=KEYS, how="left")
        self.outcomes[name] = outcomes
        self.ndcg[name] = ndcg_per_request(ranked, gain, self.k)

    def summary(self, name: str) -> dict:
        ndcg = mean_interval(self.ndcg[name])
        return outcome_summary(self.outcomes[name]) | {f"ndcg@{self.k}": ndcg}

    def difference(self, a: str, b: str) -> dict:
        """Paired a - b of CTR, CVR, CTCVR and NDCG over the same requests."""
        d = compare_outcomes(self.outcomes[a], self.outcomes[b])
        d[f"ndcg@{self.k}"] = mean_interval(self.ndcg[a] - self.ndcg[b])
        return d


def compare_orderings(
    truth: WorldTruth,
    requests: pd.DataFrame,
    pairs: pd.DataFrame,
    orderings: Mapping[str, np.ndarray | pd.DataFrame],
    *,
    reference: str | None = None,
    compare: Sequence[tuple[str, str]] = (),
    k: int = K,
) -> dict:
    """``lists``: per ordering CTR / CVR / CTCVR / NDCG@k with 95 % intervals; ``differences``:
    paired ``a - b`` for every ordering against ``reference`` and for each pair in
    ``compare`` (pairs naming an absent ordering are skipped)."""
    scored = Orderings(truth, requests, pairs, k)
    for name, ordering in orderings.items():
        scored.add(name, ordering)
    if reference is not None and reference not in scored.outcomes:
        raise ValueError(f"compare_orderings: reference {reference!r} is not an ordering")
    against = [(n, reference) for n in scored.outcomes if reference and n != reference]
    wanted = [(a, b) for a, b in compare if a in scored.outcomes and b in scored.outcomes]
    return {
        "requests": len(requests),
        "candidates": len(pairs),
        "k": k,
        "reference": reference,
        "lists": {n: scored.summary(n) for n in scored.outcomes},
        "differences": {f"{a} - {b}": scored.difference(a, b) for a, b in against + wanted},
    }


def seed_summary(by_seed: Mapping[str, dict], k: int = K) -> dict:
    """Mean and sd over seeds (None for one seed) of each metric's value in paired-difference
    dicts."""
    out = {}
    for metric in (*RATES, f"ndcg@{k}"):
        values = [d[metric]["value"] for d in by_seed.values()]
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
        out[metric] = {"value": float(np.mean(values)), "sd": sd}
    return out


def fmt(ci: dict, scale: float = 100.0, digits: int = 2) -> str:
    v, lo, hi = (ci[key] * scale for key in ("value", "low", "high"))
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def metric_cells(row: dict, k: int = K) -> str:
    """CTR, CVR in %, CTCVR in % (3 digits) and NDCG, each with its interval."""
    return (f"{fmt(row['ctr'])} | {fmt(row['cvr'])} | {fmt(row['ctcvr'], 100, 3)} | "
            f"{fmt(row[f'ndcg@{k}'], 1, 4)}")  # fmt: skip


def lists_markdown(result: dict) -> str:
    """The lists table and the paired-differences table of ``compare_orderings``."""
    k = result["k"]
    lines = [f"| ranking | CTR % | CVR % | CTCVR % | NDCG@{k} vs truth |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {metric_cells(r, k)} |" for name, r in result["lists"].items()]
    head = f"| a - b | CTR % | CVR % | CTCVR % | NDCG@{k} |"
    lines += ["", "Paired differences (same requests):", "", head, "|---|---|---|---|---|"]
    lines += [f"| {name} | {metric_cells(r, k)} |" for name, r in result["differences"].items()]
    return "\n".join(lines)
