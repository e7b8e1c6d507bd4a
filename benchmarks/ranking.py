"""Impression logs, the ESMM ranker and the blend ranker on a synthetic world.

    python benchmarks/ranking.py [--preset small] [--seed 0] [--train-requests 30000]
                                 [--valid-requests 5000] [--test-requests 10000]
                                 [--eval-requests 2000] [--threads 1] [--seeds 3]

Days are split in time: requests of days [1, D-6) train, [D-6, D-3) validate, [D-3, D) test
(day 0 is history only). Each split's impressions come from the uniform random logging
policy (``recsys.data.synthetic.impressions``). Reported:

* impressions generated per second (requests -> live candidates -> lists -> outcomes) and
  candidate features per second;
* ESMM training time (one torch thread) and click / CTCVR / CVR AUC on the test impressions
  (later days than training); the same without the KOL features (ablation), each trained
  with ``--seeds`` seeds (the lists table shows seed 0; the ablation is given per seed);
* on ``--eval-requests`` test requests, every live product ranked by: the logging policy's
  random lists, recent popularity (clicks in the last 24 h), the blend ranker, the learned
  ranker (pCTCVR), both without KOL features, and the truth (best possible). Each top-10
  list's true expected CTR, CVR and CTCVR (``simulate_outcomes``) and NDCG@10 against the
  true gains, with 95 % intervals over requests, and paired differences.

Results go to ``benchmarks/results/ranking.json`` and ``ranking.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsys.data.datasets import ensure_world
from recsys.data.synthetic.config import SECONDS_PER_DAY
from recsys.data.synthetic.impressions import impression_log, live_candidates
from recsys.data.synthetic.response import (
    WorldTruth,
    compare_outcomes,
    mean_interval,
    ndcg_per_request,
    outcome_summary,
    simulate_outcomes,
    true_gains,
)
from recsys.data.tables import load_tables, read_manifest
from recsys.data.timeline import KeyedTimeline
from recsys.ranking import BlendWeights, CandidateFeaturizer, FeatureMatrix, Ranker
from recsys.ranking.esmm_training import ImpressionDataset, esmm_metrics, esmm_settings, fit_esmm

RESULTS = Path(__file__).resolve().parent / "results"
KOL_FEATURES = ("streamer_trust", "trusted_streamer", "kol_presenting_now", "followed_streamer")
K = 10
NOTES = """Notes. CTR = expected clicks per impression of the top-10 lists, CVR = expected
conversions per expected click, CTCVR = expected conversions per impression, all from the
world's true response model (`recsys.data.synthetic.response.simulate_outcomes`, position
bias 1 / log2(j + 2)); intervals are normal approximations over requests (delta method for
the ratios), differences are paired on the same requests. NDCG@10 vs truth uses the true
position-free P(click and convert) of every live candidate as gains. The KOL ablation
retrains ESMM (or zeroes the blend weights) without `streamer_trust`, `trusted_streamer`,
`kol_presenting_now` and `followed_streamer`; each interval covers request sampling only, so
the learned ablation is repeated over training seeds (sd over seeds = training randomness).
Features use the platform's coupon drop schedule (the world's `truth/coupon_drops`). ESMM
train s = training time without validation, one torch thread; AUCs on the test impressions
(later days than any training impression)."""


def timed(fn, *args, **kwargs):
    began = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - began


def logs(truth, tables, args, day0: int, n_days: int) -> dict:
    """Train / valid / test impression logs, timed."""
    days = n_days
    bounds = {"train": (1, days - 6), "valid": (days - 6, days - 3), "test": (days - 3, days)}
    sizes = {"train": args.train_requests, "valid": args.valid_requests, "test": args.test_requests}
    out = {}
    for i, (name, (lo, hi)) in enumerate(bounds.items()):
        log, seconds = timed(
            impression_log, truth, tables, n_requests=sizes[name], seed=args.seed + i,
            start_ts=day0 + lo * SECONDS_PER_DAY, end_ts=day0 + hi * SECONDS_PER_DAY,
        )  # fmt: skip
        out[name] = (log, seconds)
    return out


def train_esmm(features: dict[str, FeatureMatrix], logs: dict, names, threads: int, seed: int):
    settings = esmm_settings()
    trainer = replace(settings["trainer"], num_threads=threads, seed=seed)

    def data(split: str) -> ImpressionDataset:
        imp = logs[split][0].impressions
        return ImpressionDataset(features[split].select(names).values, imp["click"],
                                 imp["conversion"])  # fmt: skip

    (model, fit), seconds = timed(
        fit_esmm, data("train"), data("valid"), hidden=settings["hidden"],
        dropout=settings["dropout"], ctcvr_weight=settings["ctcvr_weight"], trainer=trainer,
    )  # fmt: skip
    return {
        "model": model,
        "names": tuple(names),
        "seconds": seconds,
        "train_seconds": fit.train_seconds,
        "epochs": fit.epochs,
        "best_epoch": fit.best_epoch,
        "impressions_per_s": fit.sequences_per_second,
        "valid": esmm_metrics(model, data("valid")),
        "test": esmm_metrics(model, data("test")),
    }


def popularity(tables, rows: pd.DataFrame, window_s: int = SECONDS_PER_DAY) -> np.ndarray:
    clicks = tables.events.loc[tables.events["event_type"] == "click"]
    timeline = KeyedTimeline(clicks["product_id"].to_numpy(np.int64), clicks["ts"])
    ts = rows["ts"].to_numpy(np.int64)
    return timeline.sum_between(rows["product_id"].to_numpy(np.int64), ts - window_s, ts)


def top_by(requests, candidates, score: np.ndarray) -> pd.DataFrame:
    """Top-K of each request by a plain score (same tie rule as ``Ranker``)."""
    scores = FeatureMatrix(("score",), score.astype(np.float32)[:, None])
    ranker = Ranker.blended(BlendWeights((("score", 1.0),)), k=K, reasons=_no_reasons())
    return ranker.rank(requests, candidates, scores)


def _no_reasons():
    from recsys.ranking.reasons import ReasonRules

    return ReasonRules(())


def evaluate_lists(truth, tables, test_log, fits: dict, args) -> dict:
    """Every live candidate of the eval requests, ranked by each method, scored by the truth."""
    requests = test_log.requests.sample(n=args.eval_requests, random_state=args.seed)
    requests = requests.sort_values("request_id", ignore_index=True)
    candidates = live_candidates(tables.live_sessions, tables.showcase, requests)
    pairs = candidates.merge(requests[["request_id", "user_id", "ts"]], on="request_id")
    featurizer = CandidateFeaturizer(tables, coupon_drops=_drops(args.folder))
    features, feature_s = timed(featurizer.transform, pairs)
    pairs["gain"] = true_gains(truth, pairs)
    blend = BlendWeights.from_yaml()
    no_kol = BlendWeights(tuple((n, 0.0 if n in KOL_FEATURES else w) for n, w in blend.weights))
    logged = test_log.impressions.loc[
        test_log.impressions["request_id"].isin(requests["request_id"])
    ]
    lists = {
        "random (logging policy)": logged,
        "popularity 24h": top_by(requests, candidates, popularity(tables, pairs)),
        "blend": Ranker.blended(blend, k=K).rank(requests, candidates, features),
        "blend without KOL": Ranker.blended(no_kol, k=K).rank(requests, candidates, features),
        "truth (best possible)": top_by(requests, candidates, pairs["gain"].to_numpy()),
    }
    by_seed = {}
    for (variant, seed), fit in fits.items():
        ranker = Ranker.learned(fit["model"], fit["names"], k=K)
        by_seed[variant, seed] = simulate_outcomes(
            truth, ranker.rank(requests, candidates, features)
        )
    outcomes = {n: simulate_outcomes(truth, frame) for n, frame in lists.items()}
    outcomes |= {variant: o for (variant, seed), o in by_seed.items() if seed == 0}
    result = summarise(outcomes, pairs, requests, len(candidates), feature_s)
    result["kol_ablation_by_seed"] = kol_ablation(by_seed, pairs)
    return result


def kol_ablation(by_seed: dict, pairs: pd.DataFrame) -> dict:
    """Learned minus learned-without-KOL, per training seed, and the mean over seeds."""
    gain = pairs[["request_id", "product_id", "session_id", "gain"]]
    out, seeds = {}, sorted({seed for _, seed in by_seed})
    for seed in seeds:
        a, b = by_seed["learned (pCTCVR)", seed], by_seed["learned without KOL", seed]
        d = compare_outcomes(a, b)
        ndcg = [ndcg_per_request(o.merge(gain, on=["request_id", "product_id", "session_id"]),
                                 gain, K) for o in (a, b)]  # fmt: skip
        d["ndcg@10"] = mean_interval(ndcg[0] - ndcg[1])
        out[f"seed {seed}"] = d
    out["mean over seeds"] = {
        m: {"value": float(np.mean([out[f"seed {s}"][m]["value"] for s in seeds])),
            "sd": float(np.std([out[f"seed {s}"][m]["value"] for s in seeds], ddof=1))
            if len(seeds) > 1 else float("nan")}
        for m in ("ctr", "cvr", "ctcvr", "ndcg@10")
    }  # fmt: skip
    return out


def _drops(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "truth" / "coupon_drops.parquet")


def summarise(outcomes: dict, pairs: pd.DataFrame, requests, n_candidates: int, feature_s):
    gain = pairs[["request_id", "product_id", "session_id", "gain"]]
    ndcg = {}
    for name, frame in outcomes.items():
        ranked = frame.merge(gain, on=["request_id", "product_id", "session_id"], how="left")
        ndcg[name] = ndcg_per_request(ranked, gain, K)
    rows = {
        n: outcome_summary(o) | {"ndcg@10": mean_interval(ndcg[n])} for n, o in outcomes.items()
    }
    pairs_to_compare = [
        ("learned (pCTCVR)", "blend"), ("learned (pCTCVR)", "popularity 24h"),
        ("blend", "popularity 24h"), ("learned (pCTCVR)", "learned without KOL"),
        ("blend", "blend without KOL"), ("learned (pCTCVR)", "random (logging policy)"),
    ]  # fmt: skip
    diffs = {}
    for a, b in pairs_to_compare:
        d = compare_outcomes(outcomes[a], outcomes[b])
        d["ndcg@10"] = mean_interval(ndcg[a] - ndcg[b])
        diffs[f"{a} - {b}"] = d
    return {
        "requests": len(requests),
        "candidates": n_candidates,
        "feature_seconds": round(feature_s, 2),
        "features_per_s": round(n_candidates / feature_s),
        "lists": rows,
        "differences": diffs,
    }


def fmt(ci: dict, scale: float = 100.0, digits: int = 2) -> str:
    v, lo, hi = (ci[k] * scale for k in ("value", "low", "high"))
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown(record: dict) -> str:
    g, e = record["generation"], record["esmm"]
    lines = [
        "# Ranking: impression logs, ESMM and the blend ranker",
        "",
        f"`{record['command']}`",
        "",
        f"Machine: {record['machine']}; torch threads: {record['threads']}. World: "
        f"{record['world']}.",
        "",
        "## Impression logs (uniform random logging policy, k = 10)",
        "",
        "| split | requests | candidates / request | impressions | seconds | impressions/s "
        "| CTR | CVR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in g.items():
        lines.append(
            f"| {name} | {r['requests']:,} | {r['candidates_per_request']:.0f} | "
            f"{r['impressions']:,} | {r['seconds']:.2f} | {r['impressions_per_s']:,} | "
            f"{r['ctr']:.4f} | {r['cvr']:.4f} |"
        )
    lines += [
        "",
        f"Candidate features: {record['features']}",
        "",
        "## ESMM (held-out later days)",
        "",
    ]
    lines += ["| model | train s | epochs (best) | test click AUC | test CTCVR AUC "
              "| test CVR AUC |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in e.items():
        t = r["test"]
        lines.append(
            f"| {name} | {r['train_seconds']:.1f} | {r['epochs']} ({r['best_epoch']}) | "
            f"{t['click_auc']:.4f} | {t['ctcvr_auc']:.4f} | {t['cvr_auc']:.4f} |"
        )
    ev = record["lists"]
    lines += ["", f"## Top-{K} lists on {ev['requests']:,} test requests "
              f"({ev['candidates']:,} live candidates), true expectations in % (95 % CI)", "",
              "| ranking | CTR | CVR | CTCVR | NDCG@10 vs truth |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name, r in ev["lists"].items():
        lines.append(f"| {name} | {fmt(r['ctr'])} | {fmt(r['cvr'])} | {fmt(r['ctcvr'], 100, 3)} | "
                     f"{fmt(r['ndcg@10'], 1, 4)} |")  # fmt: skip
    lines += ["", "Paired differences (same requests):", "",
              "| a - b | CTR | CVR | CTCVR | NDCG@10 |", "|---|---|---|---|---|"]  # fmt: skip
    for name, r in ev["differences"].items():
        lines.append(f"| {name} | {fmt(r['ctr'])} | {fmt(r['cvr'])} | {fmt(r['ctcvr'], 100, 3)} | "
                     f"{fmt(r['ndcg@10'], 1, 4)} |")  # fmt: skip
    ab = ev["kol_ablation_by_seed"]
    lines += ["", "KOL ablation of the learned ranker per training seed (learned - learned "
              "without KOL, same requests):", "", "| seed | CTR | CVR | CTCVR | NDCG@10 |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name, r in ab.items():
        if name.startswith("seed"):
            lines.append(f"| {name} | {fmt(r['ctr'])} | {fmt(r['cvr'])} | "
                         f"{fmt(r['ctcvr'], 100, 3)} | {fmt(r['ndcg@10'], 1, 4)} |")  # fmt: skip
    m = ab["mean over seeds"]
    cells = [f"{m[k]['value'] * sc:.{d}f} ({m[k]['sd'] * sc:.{d}f})" for k, sc, d in
             (("ctr", 100, 2), ("cvr", 100, 2), ("ctcvr", 100, 3), ("ndcg@10", 1, 4))]  # fmt: skip
    lines.append("| mean (sd over seeds) | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", NOTES]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-requests", type=int, default=30_000)
    parser.add_argument("--valid-requests", type=int, default=5_000)
    parser.add_argument("--test-requests", type=int, default=10_000)
    parser.add_argument("--eval-requests", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3, help="ESMM training seeds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.folder = ensure_world(args.preset, args.seed)
    tables = load_tables(args.folder)
    truth = WorldTruth.from_folder(args.folder)
    manifest = read_manifest(args.folder)
    day0 = manifest["time_range"][0]
    split_logs = logs(truth, tables, args, day0, manifest["event_parts"])
    generation = {
        name: {
            "requests": len(log.requests),
            "candidates_per_request": len(log.candidates) / max(len(log.requests), 1),
            "impressions": len(log.impressions),
            "seconds": round(seconds, 2),
            "impressions_per_s": round(len(log.impressions) / seconds),
            "ctr": float(log.impressions["click"].mean()),
            "cvr": float(
                log.impressions["conversion"].sum() / max(log.impressions["click"].sum(), 1)
            ),
        }
        for name, (log, seconds) in split_logs.items()
    }
    print(json.dumps(generation, indent=1), flush=True)
    featurizer, index_s = timed(CandidateFeaturizer, tables, coupon_drops=_drops(args.folder))
    # One call for all splits: the session replay walks the event log once.
    frames = [log.impressions for log, _ in split_logs.values()]
    everything, feature_s = timed(featurizer.transform, pd.concat(frames, ignore_index=True))
    ends = np.cumsum([0] + [len(f) for f in frames])
    features = {
        name: everything.take(np.arange(ends[i], ends[i + 1])) for i, name in enumerate(split_logs)
    }
    n_rows = len(everything)
    feature_note = (f"{n_rows:,} impression rows in {feature_s:.1f} s "
                    f"({n_rows / feature_s:,.0f} rows/s; index {index_s:.1f} s)")  # fmt: skip
    print(feature_note, flush=True)
    names = features["train"].names
    fits = {}  # (variant, seed) -> trained model and its metrics
    for seed in range(args.seeds):
        without = [n for n in names if n not in KOL_FEATURES]
        for variant, used in (("learned (pCTCVR)", names), ("learned without KOL", without)):
            fits[variant, seed] = train_esmm(features, split_logs, used, args.threads, seed)
            print(variant, seed, fits[variant, seed]["test"], flush=True)
    lists = evaluate_lists(truth, tables, split_logs["test"][0], fits, args)
    command = "python benchmarks/ranking.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    record = {
        "command": command.strip(),
        "machine": machine,
        "threads": args.threads,
        "world": f"{args.preset} seed {args.seed}",
        "generation": generation,
        "features": feature_note,
        "esmm": {
            f"{variant}, seed {seed}": {k: v for k, v in r.items() if k not in ("model", "names")}
            for (variant, seed), r in fits.items()
        },
        "lists": lists,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ranking.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / "ranking.md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
