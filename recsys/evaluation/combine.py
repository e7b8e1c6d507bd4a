"""Quality results of one model run apart, combined as if one run had done them.

A trained model's grid points and seeds can run in separate processes or on other machines
(a GPU for the sequential model, the CPU for the baselines). Each run's report keeps its
per-target test values (``ModelResult.to_json(per_user=True)``); ``combine_runs`` then applies
the benchmark's own protocol to the pieces: the setting with the best validation score under
the tuning seed (the smallest seed run) is chosen, and its runs over every seed are averaged,
metrics and per-target values alike, so the paired tests see the same numbers a single
process would have produced (test means to the reports' rounding, 1e-6).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.evaluation.result_table import grid_edges
from recsys.evaluation.selection import ModelResult, hparams_key, metric_key, rounded_metrics

__all__ = ["combine_by_name", "combine_runs", "result_from_json"]

# Keys that say how or where a run trained, not which setting it tried.
RUN_KEYS = ("seed", "device")


def result_from_json(name: str, entry: dict, *, source: str = "") -> ModelResult:
    """A ``ModelResult`` from one model's entry of a quality report written with per-target
    values; ``source`` names the file in errors."""
    where = f"{source}: model {name!r}" if source else f"model {name!r}"
    missing = {"per_user", "trained"} - set(entry)
    if missing:
        raise ValueError(
            f"{where}: no {sorted(missing)} in the report; rerun it with --save-per-user"
        )
    return ModelResult(
        name=name,
        hparams=dict(entry["hparams"]),
        valid=dict(entry["valid"]),
        test=dict(entry["test"]),
        fit_s=float(entry["fit_seconds"]),
        recommend_s=float(entry["recommend_seconds"]),
        peak_rss_mb=float(entry["peak_rss_mb"]),
        grid=list(entry.get("tuning", [])),
        neighbourhood=list(entry.get("neighbourhood", [])),
        refit=dict(entry.get("refit", {})),
        grid_edges=list(entry.get("grid_edges", [])),
        seeds=dict(entry.get("seeds", {})),
        trained=bool(entry["trained"]),
        per_user={k: np.asarray(v, dtype=np.float64) for k, v in entry["per_user"].items()},
    )


def combine_by_name(results: Sequence[ModelResult], metric: str) -> list[ModelResult]:
    """One result per model name, in order of first appearance; names run once pass through."""
    groups: dict[str, list[ModelResult]] = {}
    for r in results:
        groups.setdefault(r.name, []).append(r)
    return [runs[0] if len(runs) == 1 else combine_runs(runs, metric) for runs in groups.values()]


def _setting(hparams: dict) -> dict:
    return {k: v for k, v in hparams.items() if k not in RUN_KEYS}


def _seeds(r: ModelResult) -> list:
    return list(r.seeds.get("seeds") or [r.hparams.get("seed")])


def _seed_order(seed) -> int:
    """Untrained baselines have no seed (None): each of their runs is its own tuning run."""
    return -1 if seed is None else seed


def _seed_values(r: ModelResult, key: str) -> list[float]:
    return list(r.seeds.get(f"test_{key}") or [r.test[key]])


def _tuning_rows(runs: Sequence[ModelResult], key: str) -> list[dict]:
    """Every setting tried on validation under the tuning seed, once (a run's own grid, or the
    run itself)."""
    rows, seen = [], set()
    for r in runs:
        for row in r.grid or [{"hparams": r.hparams, key: r.valid[key]}]:
            if hparams_key(row["hparams"]) not in seen:
                seen.add(hparams_key(row["hparams"]))
                rows.append(row)
    return rows


def _chosen_runs(runs: Sequence[ModelResult], key: str) -> list[ModelResult]:
    """The runs of the setting that wins on validation under the tuning seed."""
    by_setting: dict[str, list[ModelResult]] = {}
    for r in runs:
        by_setting.setdefault(hparams_key(_setting(r.hparams)), []).append(r)
    tuning_seed = min((_seeds(r)[0] for r in runs), key=_seed_order)
    scored = []
    for setting, group in by_setting.items():
        tuned = [r for r in group if _seeds(r)[0] == tuning_seed]
        if not tuned:
            raise ValueError(
                f"{runs[0].name}: setting {setting} has no run with the tuning seed {tuning_seed}"
            )
        scored.append((tuned[0].valid[key], group))
    chosen = max(scored, key=lambda pair: pair[0])[1]
    seeds = [s for r in chosen for s in _seeds(r)]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{runs[0].name}: seeds {seeds} run more than once for one setting")
    return sorted(chosen, key=lambda r: _seeds(r)[0])


def combine_runs(runs: Sequence[ModelResult], metric: str) -> ModelResult:
    """One model's runs (settings x seeds) as one result: the validation winner under the tuning
    seed, its test metrics and per-target values averaged over its seeds (runs weighted by the
    seeds each holds)."""
    key = metric_key(runs[0].valid, metric)
    chosen = _chosen_runs(runs, key)
    first = chosen[0]
    test_key = metric_key(first.test, metric)
    weights = np.array([len(_seeds(r)) for r in chosen], dtype=np.float64)
    floats = [k for k, v in first.test.items() if isinstance(v, float)]
    test = {**first.test, **{k: np.average([r.test[k] for r in chosen], weights=weights)
                             for k in floats}}  # fmt: skip
    per_user = {k: np.average([r.per_user[k] for r in chosen], axis=0, weights=weights)
                for k in first.per_user}  # fmt: skip
    values = [v for r in chosen for v in _seed_values(r, test_key)]
    tuning_seed = _seeds(first)[0]
    rows = _tuning_rows([r for r in runs if _seeds(r)[0] == tuning_seed], key)
    fit_s = sum(r.fit_s for r in chosen)
    seeds = [s for r in chosen for s in _seeds(r)]
    return ModelResult(
        name=first.name,
        hparams=first.hparams,
        valid=first.valid,
        test=rounded_metrics(test),
        fit_s=fit_s,
        recommend_s=first.recommend_s,
        peak_rss_mb=max(r.peak_rss_mb for r in runs),
        grid=rows if len(rows) > 1 else [],
        refit=first.refit,
        grid_edges=grid_edges(rows, first.hparams),
        seeds={}
        if seeds == [None]  # an untrained baseline: one run of the chosen setting, no seeds
        else {
            "seeds": seeds,
            f"test_{test_key}": [round(float(v), 6) for v in values],
            "mean": round(float(np.mean(values)), 6),
            "std": round(float(np.std(values, ddof=1)), 6) if len(values) > 1 else 0.0,
            "fit_seconds_all_seeds": round(fit_s, 1),
            "combined_runs": len(runs),
        },
        trained=any(r.trained for r in runs),
        per_user=per_user,
    )
