"""Candidate retrieval speed and recall: exact search, FAISS indexes, and live-now filtering.

    python benchmarks/retrieval.py [--n 1000000] [--dim 64] [--queries 1000] [--k 100]
                                   [--threads 2] [--quick] [--out-dir DIR]

Candidates are clustered vectors shaped like a trained candidate tower's output:

* ``n / 400`` cluster centres drawn from an anisotropic Gaussian (per-dimension scale
  ``j ** -0.5``, so a few directions dominate as in learned embeddings), L2-normalised;
* heavy-tailed cluster sizes: weights ``rank ** -0.9`` in random order (at 1M vectors the
  largest cluster holds 8% of the catalogue, the largest 1% of clusters 35%, the median one
  about 130 vectors);
* each vector = its centre + anisotropic noise of relative size ``--spread``, L2-normalised as
  the project's candidate tower does; ``--norm-sigma`` > 0 scales vectors by a log-normal norm
  (popularity-like norms, which turn the search into harder maximum-inner-product search);
* queries are fresh draws near cluster centres (clusters picked by the same weights, noise of
  relative size ``--query-spread``), unit length like the query tower's output; no query is a
  stored vector.

Uniformly random vectors (Gaussian, normalised) have no neighbourhoods and defeat every ANN
index; they appear only as a labelled worst case at a fifth of ``--n`` with one setting per
index, to save time.

Every setting answers the same queries with top-``k`` as one batch. QPS = queries / seconds
(the best of three runs where one run takes under a second); recall@k is against exact search
(``Flat``). ``torch matmul + topk`` is exact search without FAISS. The machine is shared and its
load drifts, so every ratio divides by a timing taken next to it: after each index is built,
both exact searches are timed again (``Flat`` on a quarter of the queries); ``x exact`` divides
by the faster of the two (the target's reference), ``x flat`` by ``Flat``. Build seconds include
training; MiB are the saved index files; "build peak" is the resident memory rise during the
build.

The live-now rows run ``Flat`` and each index family at its fastest setting with recall >= 0.95
through every ``LiveRetriever`` strategy at 1%, 10% and 50% live (method: the docstring of
``harness.live_retrieval``); the summary says whether filtered search at 10% live
keeps up with the same index unfiltered at equal recall.

Writes ``retrieval.json`` and ``retrieval.md`` into ``--out-dir`` (default
``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from harness.live_retrieval import (
    filtered_markdown,
    filtered_rows,
    filtered_summary,
    recall,
    timed,
)

from recsys.retrieval import CandidateIndex, IndexConfig, set_threads
from recsys.retrieval._faiss import version as faiss_version
from recsys.utils.resources import measure

RESULTS = Path(__file__).resolve().parent / "results"
RECALL_TARGET, SPEEDUP_TARGET = 0.95, 10.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="candidate vectors")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--threads", type=int, default=2, help="FAISS and torch threads")
    p.add_argument("--spread", type=float, default=0.5, help="cluster noise / centre norm")
    p.add_argument("--query-spread", type=float, default=0.5)
    p.add_argument("--norm-sigma", type=float, default=0.0, help="log-normal norm spread (0: unit)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="20k vectors, 100 queries (smoke run)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.queries = min(args.n, 20_000), min(args.queries, 100)
    return args


def _spectrum(dim: int) -> np.ndarray:
    scale = np.arange(1, dim + 1, dtype=np.float64) ** -0.5
    return (scale / np.sqrt((scale**2).mean())).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_vectors(
    n: int, dim: int, spread: float, norm_sigma: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, dim) float32 vectors; the (C, dim) centres and (C,) weights they were drawn from."""
    n_clusters = max(n // 400, 8)
    weights = np.arange(1, n_clusters + 1, dtype=np.float64) ** -0.9
    weights = rng.permutation(weights / weights.sum())
    shape = _spectrum(dim)
    centres = _unit(rng.standard_normal((n_clusters, dim), dtype=np.float32) * shape)
    owner = rng.choice(n_clusters, size=n, p=weights)
    noise = rng.standard_normal((n, dim), dtype=np.float32) * (shape * spread / math.sqrt(dim))
    vectors = _unit(centres[owner] + noise)
    popularity = rng.lognormal(0.0, norm_sigma, size=(n, 1)).astype(np.float32)
    return vectors * popularity, centres, weights


def queries_near(
    centres: np.ndarray, weights: np.ndarray, count: int, spread: float, rng: np.random.Generator
) -> np.ndarray:
    dim = centres.shape[1]
    owner = rng.choice(len(centres), size=count, p=weights)
    noise = rng.standard_normal((count, dim), dtype=np.float32) * (_spectrum(dim) * spread)
    return _unit(centres[owner] + noise / math.sqrt(dim)).astype(np.float32)


def uniform_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    return _unit(rng.standard_normal((n, dim), dtype=np.float32))


def torch_topk(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 128) -> np.ndarray:
    """Exact top-k positions by one matmul per chunk of queries (bounded (chunk, n) scores)."""
    items, out = torch.from_numpy(vectors), []
    for lo in range(0, len(queries), chunk):
        scores = torch.from_numpy(queries[lo : lo + chunk]) @ items.T  # (chunk, n)
        out.append(torch.topk(scores, k, dim=1).indices.numpy())
    return np.concatenate(out)


def build(vectors: np.ndarray, ids: np.ndarray, factory: str, seed: int) -> tuple[dict, object]:
    """Build one index; its build seconds, saved bytes and resident-memory rise."""
    nlist = int(factory[3:].split(",")[0].split("_")[0]) if factory.startswith("IVF") else 0
    train_size = min(len(vectors), 64 * nlist) if nlist else None
    config = IndexConfig(factory=factory, train_size=train_size, seed=seed)
    with measure() as m:
        index = CandidateIndex.build(vectors, ids, config)
    with tempfile.TemporaryDirectory() as tmp:
        index.save(tmp)
        size = sum(f.stat().st_size for f in Path(tmp).iterdir() if f.name != "index.json")
    info = {"build_s": round(m.seconds, 2), "index_bytes": size, "loadavg_1m": os.getloadavg()[0]}
    info["build_peak_mib"] = round(m.peak_delta_mb, 1)
    print(f"built {factory} in {m.seconds:.1f} s", flush=True)
    return info, index


def exact_now(flat, vectors: np.ndarray, queries: np.ndarray, k: int) -> dict[str, float]:
    """QPS of both exact searches measured now, so ratios pair with timings taken next to them
    (the machine's load drifts during a run). Flat is timed on a quarter of the queries."""
    part = queries[: max(len(queries) // 4, 10)]
    flat_s = timed(lambda: flat.search(part, k))[0]
    torch_s = timed(lambda: torch_topk(vectors, queries, k))[0]
    return {"flat": len(part) / flat_s, "torch": len(queries) / torch_s}


def sweep(
    index, settings: list[dict], queries: np.ndarray, k: int, truth: np.ndarray, exact: dict
) -> list[dict]:
    rows, reference = [], max(exact.values())
    for params in settings:
        view = index.with_params(**params)
        view.search(queries[:10], k)  # warm caches and threads
        seconds, (_, found) = timed(lambda v=view: v.search(queries, k))
        qps = len(queries) / seconds
        row = {"params": params, "qps": round(qps, 1), "x_exact": round(qps / reference, 2)}
        row |= {"x_flat": round(qps / exact["flat"], 2), "exact_qps": round(reference, 1)}
        row["recall"] = round(recall(found, truth), 4)
        row["meets_target"] = row["recall"] >= RECALL_TARGET and row["x_exact"] >= SPEEDUP_TARGET
        print(f"  {params} qps {qps:,.0f} recall {row['recall']:.4f}", flush=True)
        rows.append(row)
    return rows


def families(n: int) -> list[tuple[str, list[dict]]]:
    """(factory, search settings) per index family; list counts scale with sqrt(n)."""
    nlist = int(2 ** round(math.log2(4 * math.sqrt(n))))
    probes = [p for p in (8, 16, 32, 64, 128) if p <= nlist // 4]
    refine = [(16, 2), (32, 2), (32, 4), (64, 4)]
    return [
        ("HNSW32,Flat", [{"ef_search": e} for e in (16, 32, 64, 128, 256)]),
        (f"IVF{nlist},Flat", [{"nprobe": p} for p in probes]),
        (f"IVF{max(nlist // 2, 16)},PQ32,RFlat", [{"nprobe": p, "k_factor": f} for p, f in refine]),
    ]


def exact_rows(vectors, ids, queries, k) -> tuple[list[dict], object, np.ndarray]:
    """Flat and torch matmul + topk; the Flat index and the exact top-k ids."""
    info, flat = build(vectors, ids, "Flat", 0)
    flat.search(queries[:10], k)
    seconds, (_, truth) = timed(lambda: flat.search(queries, k))
    rows = [{"index": "Flat (exact)", **info, "params": {}, "qps": len(queries) / seconds}]
    seconds, top = timed(lambda: torch_topk(vectors, queries, k))
    rows.append({"index": "torch matmul + topk", "build_s": 0.0, "index_bytes": vectors.nbytes})
    rows[-1] |= {"build_peak_mib": 0.0, "loadavg_1m": os.getloadavg()[0], "params": {}}
    rows[-1] |= {"qps": len(queries) / seconds, "recall": round(recall(ids[top], truth), 4)}
    rows[0]["recall"] = 1.0
    reference = max(r["qps"] for r in rows)
    for row in rows:
        row |= {"x_exact": round(row["qps"] / reference, 2), "exact_qps": round(reference, 1)}
        row |= {"x_flat": round(row["qps"] / rows[0]["qps"], 2), "qps": round(row["qps"], 1)}
        row["meets_target"] = False
    print(f"exact: faiss {rows[0]['qps']:,.0f} qps, torch {rows[1]['qps']:,.0f} qps", flush=True)
    return rows, flat, truth


def ann_rows(vectors, ids, queries, k, truth, flat, seed, dataset) -> list[dict]:
    rows = []
    for factory, settings in families(len(vectors)):
        if dataset == "uniform":
            settings = settings[-1:]  # the widest search only: the worst case needs no sweep
        info, index = build(vectors, ids, factory, seed)
        exact = exact_now(flat, vectors, queries, k)
        for row in sweep(index, settings, queries, k, truth, exact):
            rows.append({"index": factory, **info, **row, "_index": index})
    return rows


def operating_points(rows: list[dict]) -> dict[str, tuple[object, dict, float]]:
    """Per index family: its fastest setting with recall >= target (else its best recall),
    as (index, settings, recall)."""
    points = {}
    for factory in dict.fromkeys(r["index"] for r in rows if "_index" in r):
        own = [r for r in rows if r["index"] == factory]
        good = [r for r in own if r["recall"] >= RECALL_TARGET]
        pick = max(good, key=lambda r: r["qps"]) if good else max(own, key=lambda r: r["recall"])
        points[factory] = (pick["_index"], pick["params"], pick["recall"])
    return points


def dataset_rows(name, vectors, queries, args) -> tuple[list[dict], list[dict]]:
    ids = np.arange(len(vectors), dtype=np.int64)
    rows, flat, truth = exact_rows(vectors, ids, queries, args.k)
    rows += ann_rows(vectors, ids, queries, args.k, truth, flat, args.seed, name)
    filtered = []
    if name == "clustered":
        points = {"Flat": (flat, {}, 1.0), **operating_points(rows)}
        filtered = filtered_rows(points, queries, args.k, args.seed)
    for row in rows:
        row.pop("_index", None)
        row |= {"dataset": name, "n": len(vectors)}
    return rows, filtered


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    set_threads(args.threads)
    torch.set_num_threads(args.threads)
    began, load_before = time.time(), os.getloadavg()
    rng = np.random.default_rng(args.seed)
    vectors, centres, weights = clustered_vectors(
        args.n, args.dim, args.spread, args.norm_sigma, rng
    )
    queries = queries_near(centres, weights, args.queries, args.query_spread, rng)
    rows, filtered = dataset_rows("clustered", vectors, queries, args)
    del vectors
    worst = uniform_vectors(max(args.n // 5, 1000), args.dim, rng)
    rows += dataset_rows("uniform", worst, uniform_vectors(args.queries, args.dim, rng), args)[0]
    report = {
        "command": shlex.join(["python", "benchmarks/retrieval.py", *_recorded(argv)]),
        # Where the files went is not a setting of the measurement (and would leak a local path).
        "settings": {k: v for k, v in vars(args).items() if k != "out_dir"},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "versions": {
                "faiss": faiss_version(),
                "numpy": np.__version__,
                "torch": torch.__version__,
            },
        },
        "targets": {"recall": RECALL_TARGET, "x_exact": SPEEDUP_TARGET},
        "seconds": round(time.time() - began, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "unfiltered": rows,
        "filtered": filtered,
    }
    write_report(report, args.out_dir)
    return report


def _recorded(argv: list[str]) -> list[str]:
    """``argv`` without ``--out-dir``: where the files went is no setting (and a local path)."""
    kept, skip = [], False
    for arg in argv:
        if not skip and arg != "--out-dir" and not arg.startswith("--out-dir="):
            kept.append(arg)
        skip = arg == "--out-dir"
    return kept


def _params(p: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items()) or "-"


def markdown(report: dict) -> str:
    k = report["settings"]["k"]
    lines = [
        "| data | n | index | params | build s | MiB | build peak MiB | QPS | x exact | x flat "
        f"| recall@{k} | target |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["unfiltered"]:
        lines.append(
            f"| {r['dataset']} | {r['n']:,} | {r['index']} | {_params(r['params'])} "
            f"| {r['build_s']} | {r['index_bytes'] / 2**20:,.0f} | {r['build_peak_mib']:,.0f} "
            f"| {r['qps']:,.0f} | {r['x_exact']} | {r['x_flat']} | {r['recall']:.4f} "
            f"| {'yes' if r['meets_target'] else ''} |"
        )
    return "\n".join([*lines, "", *filtered_markdown(report["filtered"], k)])


def summary(report: dict) -> str:
    """Which settings meet the target; the fastest filtered search at each live share."""
    k = report["settings"]["k"]
    meets = [
        f"{r['dataset']} {r['index']} ({_params(r['params'])}): recall@{k} {r['recall']:.3f} "
        f"at {r['x_exact']}x exact"
        for r in report["unfiltered"]
        if r["meets_target"]
    ]
    lines = ["Meets the target: " + ("; ".join(meets) if meets else "none") + "."]
    lines += filtered_summary(report["filtered"], k, RECALL_TARGET)
    return "\n\n".join(lines)


def write_report(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "retrieval.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    load = ", ".join(f"{x:.2f}" for x in m["loadavg_before"])
    head = (
        f"# Candidate retrieval\n\n`{report['command']}` ({report['seconds']} s, peak RSS "
        f"{report['peak_rss_mib']:,.0f} MiB)\n\n{m['cpus']} CPUs, {report['settings']['threads']} "
        f"threads, load average before the run {load} (the machine is shared: compare ratios, "
        f"not absolute QPS). Target: recall@{report['settings']['k']} >= {RECALL_TARGET} at "
        f">= {SPEEDUP_TARGET:g}x the QPS of the faster exact search. Generator and method: see the "
        "docstring of benchmarks/retrieval.py.\n\n"
    )
    table = markdown(report)
    (out_dir / "retrieval.md").write_text(head + summary(report) + "\n\n" + table + "\n")
    print(summary(report) + "\n\n" + table)


if __name__ == "__main__":
    main()
