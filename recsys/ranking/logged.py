"""The ranker's run on a world without planted truth (a platform's own logs): logged outcomes.

A world from ``recsys-ingest`` has no answer key (``truth/``), so impressions cannot be
simulated and top-k lists cannot be scored by true expected outcomes; ``recsys-rank`` says so
and runs on what the logs hold instead, in the same time windows (``experiment.windows``):

* requests are room entries, candidates everything live at that moment (as with truth);
* a candidate's labels are whether the viewer clicked / bought that product within
  ``HORIZON_S`` after the request, read from the logged events;
* ESMM trains on each training request's clicked candidates plus ``k`` sampled unclicked ones.
  The logs hold no impressions, so what the viewer was shown is unknown: an unclicked
  candidate is a negative by assumption, and the learned ranker imitates logged behaviour;
* orderings are compared on held-out requests over every live candidate by replaying the
  logged next actions: the share of requests whose top-k holds a product the viewer clicked
  (bought) next, and NDCG@k with gains 1 for a click and 2 for a purchase.

Inverse-propensity estimates of a new ordering's CTR need the logging policy's propensities;
the schema's events carry none, so the record states them as not estimable.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import numpy as np
import pandas as pd

from recsys.ranking.experiment import (
    LEARNED,
    SPLITS,
    RankSettings,
    RankWorld,
    _plain,
    _timed,
    blend_weights,
    featurize,
    fit_variants,
    logged_orderings,
    model_features,
    windows,
)
from recsys.ranking.offline_eval import top_by
from recsys.ranking.ranker import Ranker
from recsys.simulation.impressions import ImpressionLog, live_candidates, request_points
from recsys.simulation.response import mean_interval

log = logging.getLogger(__name__)

HORIZON_S = 3600  # a click or purchase this soon after the request answers it
NO_TRUTH = ("no planted truth (truth/) in {folder}: impressions are not simulated and lists are "
            "not scored by true outcomes; ranking on logged outcomes instead")  # fmt: skip
NO_PROPENSITY = "not estimable: the logs carry no logging-policy propensities"
METRICS = ("logged_click_hr", "logged_purchase_hr", "logged_ndcg")


def logged_labels(events: pd.DataFrame, pairs: pd.DataFrame, horizon_s: int = HORIZON_S):
    """(click, conversion) per pair row: the pair's user clicked / bought its product in
    ``[ts, ts + horizon_s)``; a purchase counts as a click too (ESMM's CTR -> CVR chain)."""
    acts = events.loc[events["event_type"].isin(("click", "purchase")),
                      ["user_id", "product_id", "ts", "event_type"]]  # fmt: skip
    rows = pairs[["user_id", "product_id", "ts"]].assign(row=np.arange(len(pairs)))
    hits = rows.merge(acts.astype({"product_id": "int64"}), on=["user_id", "product_id"],
                      suffixes=("", "_act"))  # fmt: skip
    hits = hits[(hits["ts_act"] >= hits["ts"]) & (hits["ts_act"] < hits["ts"] + horizon_s)]
    click, conversion = np.zeros(len(pairs), np.int8), np.zeros(len(pairs), np.int8)
    click[hits["row"].to_numpy()] = 1
    conversion[hits.loc[hits["event_type"] == "purchase", "row"].to_numpy()] = 1
    return click, conversion


def logged_pairs(world: RankWorld, requests: pd.DataFrame) -> pd.DataFrame:
    """Every live candidate of each request with its user, time and logged labels."""
    tables = world.tables
    candidates = live_candidates(tables.live_sessions, tables.showcase, requests)
    pairs = candidates.merge(requests[["request_id", "user_id", "ts"]], on="request_id")
    pairs["click"], pairs["conversion"] = logged_labels(tables.events, pairs)
    return pairs


def training_rows(pairs: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """Each request's clicked candidates and ``k`` of its unclicked ones, drawn at random."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(pairs)), pairs["click"].to_numpy(), pairs["request_id"]))
    shuffled = pairs.iloc[order]
    negative_rank = shuffled.groupby(["request_id", "click"]).cumcount().to_numpy()
    keep = (shuffled["click"].to_numpy() == 1) | (negative_rank < k)
    return shuffled[keep].sort_values(["request_id", "product_id"], ignore_index=True)


def logged_logs(world: RankWorld, settings: RankSettings) -> dict[str, tuple]:
    """(ImpressionLog-shaped logged rows, seconds) per split, like ``impression_logs``."""
    sizes = dict(zip(SPLITS, (settings.train_requests, settings.valid_requests,
                              settings.test_requests), strict=True))  # fmt: skip
    out = {}
    for i, (name, (lo, hi)) in enumerate(windows(world, settings.train_share).items()):

        def one(name=name, lo=lo, hi=hi, i=i) -> ImpressionLog:
            n = sizes[name]
            requests = request_points(world.tables.events, n_requests=None, seed=settings.seed + i,
                                      start_ts=lo, end_ts=hi)  # fmt: skip
            if n is not None and n < len(requests):
                requests = requests.sample(n=n, random_state=settings.seed + i)
                requests = requests.sort_values("request_id", ignore_index=True)
            pairs = logged_pairs(world, requests)
            rows = training_rows(pairs, settings.k, settings.seed)
            return ImpressionLog(requests, pairs, rows, len(pairs))

        out[name] = _timed(one)
        log.info("%s: %d requests, %d logged rows (%.1f%% clicked)", name,
                 len(out[name][0].requests), len(out[name][0].impressions),
                 100 * out[name][0].impressions["click"].mean())  # fmt: skip
    return out


def replay(requests: pd.DataFrame, pairs: pd.DataFrame, score, k: int) -> dict[str, np.ndarray]:
    """Per request: a clicked / bought product in the ordering's top-k (0/1), and NDCG@k with
    gains 1 click, 2 purchase (NaN where the request has no positive candidate)."""
    gain = pairs["click"].to_numpy(np.float64) + pairs["conversion"].to_numpy(np.float64)
    labelled = pairs[["request_id", "product_id", "session_id"]].assign(gain=gain,
        conversion=pairs["conversion"].to_numpy())  # fmt: skip
    shown = top_by(requests, pairs, score, k).merge(
        labelled, how="left", on=["request_id", "product_id", "session_id"]
    )
    index = pd.Index(requests["request_id"])
    at = index.get_indexer(shown["request_id"])
    discount = 1.0 / np.log2(shown["position"].to_numpy() + 2.0)
    dcg = np.bincount(at, shown["gain"].to_numpy() * discount, minlength=len(index))
    hit = np.bincount(at, shown["gain"].to_numpy() > 0, minlength=len(index)) > 0
    bought = np.bincount(at, shown["conversion"].to_numpy() > 0, minlength=len(index)) > 0
    return {"logged_click_hr": hit.astype(float), "logged_purchase_hr": bought.astype(float),
            "logged_ndcg": dcg / _ideal_dcg(pairs, gain, index, k)}  # fmt: skip


def _ideal_dcg(pairs: pd.DataFrame, gain: np.ndarray, index: pd.Index, k: int) -> np.ndarray:
    at = index.get_indexer(pairs["request_id"])
    order = np.lexsort((-gain, at))
    ranked_at, ranked_gain = at[order], gain[order]
    first = np.r_[0, np.flatnonzero(np.diff(ranked_at)) + 1]
    position = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    top = position < k
    ideal = np.bincount(ranked_at[top], ranked_gain[top] / np.log2(position[top] + 2.0),
                        minlength=len(index))  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, ideal, np.nan)


def summarise(per_request: dict[str, np.ndarray]) -> dict:
    out = {}
    for metric, values in per_request.items():
        defined = values[~np.isnan(values)]
        out[metric] = mean_interval(defined) if len(defined) else None
    return out


def run_logged(world: RankWorld, settings: RankSettings) -> tuple[dict, Ranker]:
    """``run_experiment``'s steps on logged outcomes (see the module notes)."""
    log.warning(NO_TRUTH.format(folder=world.folder))
    seconds = {}
    logs, seconds["logged_rows"] = _timed(logged_logs, world, settings)
    test = logs["test"][0]
    n = min(settings.eval_requests, len(test.requests))
    requests = test.requests.sample(n=n, random_state=settings.seed).sort_values(
        "request_id", ignore_index=True)  # fmt: skip
    pairs = test.candidates[test.candidates["request_id"].isin(requests["request_id"])]
    pairs = pairs.reset_index(drop=True)
    frames = {name: logs[name][0].impressions for name in SPLITS} | {"eval": pairs}
    features, note = featurize(world, frames)
    fits, seconds["esmm"] = _timed(fit_variants, world, features, logs, settings)
    named = logged_orderings(world, pairs, features["eval"], fits, settings)
    lists = {name: summarise(replay(requests, pairs, score, settings.k))
             for name, score in named.items()}  # fmt: skip
    spans = windows(world, settings.train_share)
    record = {
        "world": world.name,
        "checkpoint": world.checkpoint,
        "outcomes": "logged",
        "truth": NO_TRUTH.format(folder=world.folder),
        "windows": {name: list(w) for name, w in spans.items()},
        "settings": asdict(settings),
        "model_features": list(model_features(world)),
        "esmm": {f"{name}, seed {seed}": _plain(r) for (name, seed), r in fits.items()},
        "lists": {
            "requests": len(requests),
            "candidates": len(pairs),
            "k": settings.k,
            "outcomes": "logged",
            "lists": lists,
            "inverse_propensity": NO_PROPENSITY,
        },  # fmt: skip
        "seconds": {key: round(v, 2) for key, v in {**seconds, **note}.items() if key != "rows"},
    }
    if settings.mode == "blend":
        return record, Ranker.blended(blend_weights(settings), k=settings.k)
    return record, fits[LEARNED, settings.esmm_seeds[0]]["ranker"]


def logged_markdown(result: dict) -> str:
    """The lists table of ``run_logged`` (replayed logged next actions)."""
    k = result["k"]
    head = f"| ranking | clicked next in top-{k} % | bought next in top-{k} % | NDCG@{k} (logged) |"
    lines = [head, "|---|---|---|---|"]
    for name, row in result["lists"].items():
        cells = [_cell(row[m], 100 if m != "logged_ndcg" else 1) for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Inverse-propensity estimates: {result['inverse_propensity']}."]
    return "\n".join(lines)


def _cell(ci: dict | None, scale: float) -> str:
    if ci is None:
        return "-"
    v, lo, hi = (ci[key] * scale for key in ("value", "low", "high"))
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
