"""Live-now filtered search, measured for ``benchmarks/retrieval.py``.

Search is restricted to a random 1%, 10% or 50% of the catalogue (one availability interval
per entity, the query time inside the live ones). Each index runs at its chosen setting with
every ``LiveRetriever`` strategy that applies to it:

* ``exact``: an exact Flat sub-index over the live vectors;
* ``segment``: an IVF sub-index over the live vectors that reuses the parent's trained
  quantizer and codebooks, searched with the parent's ``nprobe`` / ``k_factor`` (IVF indexes
  only); ``segment widened`` scales ``nprobe`` by ``share ** -0.5`` (``LiveRetriever``'s
  default);
* ``selector``: the full index with an ID selector; ``selector widened`` as above, also for
  HNSW's ``ef_search``.

Recall is against the exact filtered top-``k`` (``Flat`` with ``exact``); ``x unfiltered``
divides by the same index's unfiltered QPS timed just before its filtered runs; ``setup s`` is
the first search in the segment, which builds the strategy's state (sub-index or selector).
"""

from __future__ import annotations

import time

import numpy as np

from recsys.retrieval import LiveRetriever, LiveSchedule

LIVE_FRACTIONS = (0.01, 0.1, 0.5)
TARGET_SHARE = 0.1  # the live share at which filtered search must keep up with unfiltered
LIVE_T = 1_700_000_000  # the query time of the live-now runs
WIDEN = 0.5  # LiveRetriever's default search widening


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row's true ids that were found (padding -1 never counts)."""
    hits = [np.intersect1d(f[f >= 0], t[t >= 0]).size for f, t in zip(found, truth, strict=True)]
    return float(np.sum(hits) / max(np.count_nonzero(truth >= 0), 1))


def timed(fn) -> tuple[float, object]:
    """Seconds of ``fn()`` (best of three when one call is under a second) and its result."""
    began = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - began
    if seconds < 1.0:
        for _ in range(2):
            began = time.perf_counter()
            fn()
            seconds = min(seconds, time.perf_counter() - began)
    return seconds, result


def live_schedule(n: int, fraction: float, t: int, rng: np.random.Generator) -> LiveSchedule:
    """One interval per entity; a random ``fraction`` of them covers ``t``."""
    live = rng.random(n) < fraction
    length = rng.integers(600, 4 * 3600, size=n)
    offset = rng.integers(0, length)
    start = np.where(live, t - offset, t + 1 + rng.integers(0, 86_400, size=n))
    start = np.where(~live & (rng.random(n) < 0.5), t - length - 1 - offset, start)
    return LiveSchedule(np.arange(n, dtype=np.int64), start, start + length)


def filtered_rows(
    points: dict[str, tuple[object, dict, float]], queries: np.ndarray, k: int, seed: int
) -> list[dict]:
    """Every applicable strategy at each live share, per index at its chosen setting.

    ``points``: label -> (index, search settings, its unfiltered recall@k), the exact ``Flat``
    first: its ``exact`` run is the filtered reference for the others.
    """
    rows, t, n = [], LIVE_T, len(next(iter(points.values()))[0])
    for fraction in LIVE_FRACTIONS:
        schedule = live_schedule(n, fraction, t, np.random.default_rng(seed))
        live_s, live = timed(lambda s=schedule: s.live_at(t))
        truth = None
        for label, (index, params, base_recall) in points.items():
            index = index.with_params(**params)
            base_qps = _unfiltered_now(index, queries, k, exact=label == "Flat")
            for strategy, widen in _strategies(index):
                name = strategy + (" widened" if widen else "")
                row = {"index": label, "params": params, "live": fraction, "strategy": name}
                row |= {"live_count": len(live), "live_at_ms": round(live_s * 1000, 2)}
                row |= _filtered_run(index, schedule, queries, k, strategy, widen)
                truth = row["found"] if truth is None else truth
                row["recall"] = round(recall(row.pop("found"), truth), 4)
                row |= {"x_unfiltered": round(row["qps"] / base_qps, 2)}
                row |= {"unfiltered_qps": round(base_qps, 1), "unfiltered_recall": base_recall}
                said = f"qps {row['qps']:,.0f} recall {row['recall']:.4f} setup {row['setup_s']} s"
                print(f"  live {fraction:.0%} {label} {name}: {said}", flush=True)
                rows.append(row)
    return rows


def _unfiltered_now(index, queries: np.ndarray, k: int, exact: bool) -> float:
    """The index's unfiltered QPS measured now (exact Flat on a quarter of the queries)."""
    part = queries[: max(len(queries) // 4, 10)] if exact else queries
    return len(part) / timed(lambda: index.search(part, k))[0]


def _strategies(index) -> list[tuple[str, float]]:
    """(strategy, widen): the IVF sub-index where it applies; widened runs where the index
    has a search breadth."""
    runs = [("exact", 0.0)]
    if index.can_subset:
        runs += [("segment", 0.0), ("segment", WIDEN)]
    runs.append(("selector", 0.0))
    return runs + ([("selector", WIDEN)] if index.widened(2.0) is not index else [])


def _filtered_run(index, schedule, queries, k, strategy, widen) -> dict:
    retriever = LiveRetriever(index, schedule, widen=widen)
    began = time.perf_counter()
    retriever.search(queries[:10], LIVE_T, k, strategy=strategy)  # builds the segment's state
    setup = time.perf_counter() - began
    seconds, (_, found) = timed(lambda: retriever.search(queries, LIVE_T, k, strategy=strategy))
    return {"setup_s": round(setup, 3), "qps": round(len(queries) / seconds, 1), "found": found}


def _params(p: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items()) or "-"


def filtered_markdown(rows: list[dict], k: int) -> list[str]:
    lines = [
        f"Live-now filtering (clustered): recall@{k} against the exact filtered top-{k}; "
        "x unfiltered = QPS / the same index's unfiltered QPS; setup s = building the "
        "strategy's state (sub-index or selector) on the segment's first search.",
        "",
        "| live | live count | live_at ms | index | params | strategy | setup s | QPS "
        f"| x unfiltered | recall@{k} | unfiltered recall@{k} |",
        "|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['live']:.0%} | {r['live_count']:,} | {r['live_at_ms']} | {r['index']} "
            f"| {_params(r['params'])} | {r['strategy']} | {r['setup_s']} | {r['qps']:,.0f} "
            f"| {r['x_unfiltered']} | {r['recall']:.4f} | {r['unfiltered_recall']:.4f} |"
        )
    return lines


def filtered_summary(rows: list[dict], k: int, recall_target: float) -> list[str]:
    """The target verdict at ``TARGET_SHARE`` live, then the fastest run at each live share."""
    lines = [_target_verdict(rows, k, recall_target)]
    for share in LIVE_FRACTIONS:
        good = [r for r in rows if r["live"] == share and r["recall"] >= recall_target]
        if good:
            best = max(good, key=lambda r: r["qps"])
            lines.append(
                f"{share:.0%} live: fastest with recall@{k} >= {recall_target}: {best['index']} "
                f"{best['strategy']} ({best['qps']:,.0f} QPS, {best['x_unfiltered']}x the same "
                f"index unfiltered, recall {best['recall']:.3f}, setup {best['setup_s']} s)."
            )
    return lines


def _target_verdict(rows: list[dict], k: int, recall_target: float) -> str:
    """Approximate indexes whose filtered search at ``TARGET_SHARE`` live runs at least at the
    unfiltered QPS while both the filtered and the unfiltered recall@k reach the target (the
    fastest such strategy per index; else the closest run)."""
    head = (
        f'Target "filtered at {TARGET_SHARE:.0%} live no slower than unfiltered at equal '
        f'recall" (approximate indexes; both recall@{k} >= {recall_target}): '
    )
    runs = [r for r in rows if r["live"] == TARGET_SHARE and r["index"] != "Flat"]
    equal = [r for r in runs if min(r["recall"], r["unfiltered_recall"]) >= recall_target]
    met = [r for r in equal if r["x_unfiltered"] >= 1.0]
    best = {}  # the fastest qualifying run per index
    for r in sorted(met, key=lambda r: r["x_unfiltered"]):
        best[r["index"]] = r
    shown = sorted(best.values(), key=lambda r: -r["x_unfiltered"])
    shown = shown or sorted(equal, key=lambda r: -r["x_unfiltered"])[:1]
    said = "; ".join(
        f"{r['index']} {r['strategy']} at {r['x_unfiltered']}x the unfiltered QPS, recall "
        f"{r['recall']:.3f} (unfiltered {r['unfiltered_recall']:.3f}), setup {r['setup_s']} s"
        for r in shown
    )
    if met:
        return head + "holds: " + said + "."
    return head + "does not hold" + (f"; closest: {said}." if said else ".")
