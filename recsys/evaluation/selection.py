"""Tune, fit and evaluate a list of recommenders on one split under one protocol.

Each model is tuned on the validation targets over its grid, then its best configuration is
scored on the test targets. Models run one after another in this process, so their times and
memory are measured side by side on the same machine state. Every model is compared with the
best one on the same test targets by a paired test, so the table says which gaps are real.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from recsys.core import Recommender
from recsys.data.interactions import Split
from recsys.evaluation import evaluate, paired_test
from recsys.evaluation.protocols import EvalResult
from recsys.evaluation.result_table import grid_edges, markdown_table
from recsys.utils.resources import measure

__all__ = ["Candidate", "ModelResult", "QualitySettings", "compare_results", "grid_edges",
           "markdown_table", "run_quality"]  # fmt: skip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A model family to benchmark: a builder from hyperparameters and a grid to tune over."""

    name: str
    build: Callable[..., Recommender]
    grid: Sequence[dict] = ({},)
    # Refine the best grid point on validation by moving one numeric hyperparameter at a time
    # to half or double its value while that improves, then report the test scores of the
    # final point's half/double neighbours: a tuned model should not lose to them.
    neighbourhood: bool = False
    max_refine_rounds: int = 2
    # Refit the chosen setting on train + validation (``split.test_history``) before the test
    # stage, as a deployed model would be; the validation events are then training data too.
    refit: bool = False
    # A trained model: after tuning (on the first seed), the chosen setting is trained again
    # with each further seed; the test metrics are the seeds' mean (spread reported), and every
    # model is also compared with the best untrained baseline.
    seeds: tuple[int, ...] = ()


@dataclass
class ModelResult:
    name: str
    hparams: dict
    valid: dict
    test: dict
    fit_s: float
    recommend_s: float
    peak_rss_mb: float
    grid: list[dict] = field(default_factory=list)
    neighbourhood: list[dict] = field(default_factory=list)
    refit: dict = field(default_factory=dict)
    grid_edges: list[str] = field(default_factory=list)
    seeds: dict = field(default_factory=dict)
    trained: bool = False
    vs_best_baseline: dict = field(default_factory=dict)
    per_user: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    significance: dict = field(default_factory=dict)

    def to_json(self, *, per_user: bool = False) -> dict:
        """The report's entry; with ``per_user`` also every test target's metric values, so
        runs made apart can be combined (``recsys.evaluation.combine``)."""
        extra = {"per_user": {k: np.asarray(v, float).tolist() for k, v in self.per_user.items()}}
        return {
            "trained": self.trained,
            "hparams": self.hparams,
            "valid": self.valid,
            "test": self.test,
            "fit_seconds": round(self.fit_s, 3),
            "recommend_seconds": round(self.recommend_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "tuning": self.grid,
            "neighbourhood": self.neighbourhood,
            "refit": self.refit,
            "grid_edges": self.grid_edges,
            "seeds": self.seeds,
            "vs_best_baseline": self.vs_best_baseline,
            "vs_best": self.significance,
            **(extra if per_user else {}),
        }


@dataclass(frozen=True)
class QualitySettings:
    protocol: str = "full"  # full | sampled | live
    metric: str = "ndcg@10"  # tuning and comparison metric (protocol prefix added as needed)
    ks: tuple[int, ...] = (10, 20, 100)
    seed: int = 0
    max_valid_users: int | None = None  # subsample validation targets when tuning (seeded)
    significance: str = "ttest"


def _eval(model: Recommender, split: Split, stage: str, s: QualitySettings):
    return evaluate(
        model,
        split,
        protocol=s.protocol,
        stage=stage,
        ks=s.ks,
        seed=s.seed,
        max_users=s.max_valid_users if stage == "valid" else None,
    )


def metric_key(result_metrics: dict, metric: str) -> str:
    """The key under which ``metric`` is reported (sampled protocols prefix their names)."""
    for key in (metric, f"sampled_{metric}"):
        if key in result_metrics:
            return key
    raise KeyError(f"metric {metric!r} not among {sorted(result_metrics)}")


def _fit(candidate: Candidate, hparams: dict, split: Split) -> Recommender:
    model = candidate.build(**hparams)
    return model.fit(split.train, item_features=split.item_features)


@dataclass
class _Fitted:
    hparams: dict
    model: Recommender | None  # None once released for a refit
    fit: object  # Measured
    valid: dict


def _fit_and_validate(candidate: Candidate, hparams: dict, split: Split, s: QualitySettings):
    with measure() as fit_m:
        model = _fit(candidate, hparams, split)
    valid = _eval(model, split, "valid", s).metrics
    log.debug(
        "%s %s valid %s",
        candidate.name,
        hparams,
        {k: round(v, 5) for k, v in valid.items() if isinstance(v, float) and s.metric in k},
    )
    return _Fitted(dict(hparams), model, fit_m, valid)


def hparams_key(hparams: dict) -> str:
    """A hashable, order-free key of one setting (grid points compare by it)."""
    return repr(sorted(hparams.items()))


@dataclass
class _Search:
    """The best point so far, every point tried, and the fitted neighbours of the best.

    Keeping the best's half/double neighbours fitted lets the test-side neighbourhood check
    reuse them instead of refitting (an EASE fit on 20k items takes minutes).
    """

    best: _Fitted | None = None
    rows: list[dict] = field(default_factory=list)
    kept: dict[str, Recommender] = field(default_factory=dict)

    def offer(self, fitted: _Fitted, metric: str, keep: bool, **extra) -> bool:
        key = metric_key(fitted.valid, metric)
        value = fitted.valid[key]
        self.rows.append({"hparams": fitted.hparams, key: round(float(value), 6), **extra})
        improved = self.best is None or value > self.best.valid[key]
        if keep:
            self.kept[hparams_key(fitted.hparams)] = fitted.model
        if improved:
            self.best = fitted
        if keep:
            wanted = {hparams_key(h) for h in neighbours(self.best.hparams)}
            self.kept = {k: m for k, m in self.kept.items() if k in wanted}
        return improved


def tune(candidate: Candidate, split: Split, s: QualitySettings) -> _Search:
    """The best grid point on validation (kept fitted), refined when the candidate asks."""
    search = _Search()
    with tqdm(total=len(candidate.grid), desc=f"tuning {candidate.name}", unit="fit",
              leave=False) as bar:  # fmt: skip
        for hparams in candidate.grid:
            _try(candidate, hparams, split, s, search, bar, keep=candidate.neighbourhood)
        if candidate.neighbourhood:
            refine(candidate, search, split, s, bar)
    return search


def _try(candidate: Candidate, hparams: dict, split: Split, s: QualitySettings, search: _Search,
         bar: tqdm, **offer) -> bool:  # fmt: skip
    """Fit and validate one setting, offer it to the search, show the best so far."""
    improved = search.offer(_fit_and_validate(candidate, hparams, split, s), s.metric, **offer)
    key = metric_key(search.best.valid, s.metric)
    bar.set_postfix({f"best {key}": f"{search.best.valid[key]:.4f}"}, refresh=False)
    bar.update()
    return improved


def neighbours(hparams: dict) -> list[dict]:
    """``hparams`` with one numeric value halved or doubled (ints stay ints, >= 1)."""
    out = []
    for name, value in hparams.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value == 0:
            continue
        for factor in (0.5, 2.0):
            new = value * factor if isinstance(value, float) else max(1, round(value * factor))
            if new != value:
                out.append({**hparams, name: new})
    return out


def refine(candidate: Candidate, search: _Search, split: Split, s: QualitySettings,
           bar: tqdm) -> None:  # fmt: skip
    """Coordinate search from the best grid point on validation; every point tried is kept."""
    tried = {hparams_key(r["hparams"]) for r in search.rows}
    for _ in range(candidate.max_refine_rounds):
        todo = [h for h in neighbours(search.best.hparams) if hparams_key(h) not in tried]
        tried.update(hparams_key(h) for h in todo)
        bar.total += len(todo)
        improved = False
        for hparams in todo:
            improved |= _try(candidate, hparams, split, s, search, bar, keep=True, refine=True)
        if not improved:
            break


def run_candidate(candidate: Candidate, split: Split, s: QualitySettings) -> ModelResult:
    search = tune(candidate, split, s)
    best = search.best
    with measure() as rec_m:
        result = _eval(best.model, split, "test", s)
    fit_m, refit = best.fit, {}
    if candidate.refit:
        # Released before the refit, so a large model (EASE over 50k items: 10 GB) is never
        # held twice.
        best.model = None
        with measure() as fit_m:
            model = candidate.build(**best.hparams).fit(
                split.test_history, item_features=split.item_features
            )
        trained_only = result
        with measure() as rec_m:
            result = _eval(model, split, "test", s)
        refit = refit_summary(trained_only, result, s)
    res = ModelResult(
        name=candidate.name,
        hparams=best.hparams,
        valid=rounded_metrics(best.valid),
        test=rounded_metrics(result.metrics),
        fit_s=fit_m.seconds,
        recommend_s=rec_m.seconds,
        peak_rss_mb=max(best.fit.peak_rss_mb, fit_m.peak_rss_mb, rec_m.peak_rss_mb),
        grid=search.rows if len(search.rows) > 1 else [],
        refit=refit,
        grid_edges=grid_edges(search.rows, best.hparams),
        trained=bool(candidate.seeds),
        per_user=result.per_user,
    )
    if len(candidate.seeds) > 1:
        over_seeds(candidate, res, result, split, s)
    if candidate.neighbourhood:
        # Judged on the models fitted on train alone, so no neighbour needs a refit.
        chosen = trained_only if candidate.refit else result
        res.neighbourhood = neighbourhood(candidate, best.hparams, chosen, split, s, search.kept)
    key = metric_key(res.test, s.metric)
    log.info("%s: %d setting(s) tried, chose %s (validation %s %.5f), test %s %.5f",
             candidate.name, len(search.rows), best.hparams, key, best.valid[key], key,
             res.test[key])  # fmt: skip
    for edge in res.grid_edges:
        log.warning("%s: %s", candidate.name, edge)
    return res


def over_seeds(
    candidate: Candidate, res: ModelResult, first: EvalResult, split: Split, s: QualitySettings
) -> None:
    """Train the chosen setting with every further seed and put the seeds' mean test metrics
    and per-target values (for the paired tests) in ``res``; the spread goes to ``res.seeds``."""
    runs = [first]
    for seed in candidate.seeds[1:]:
        with measure() as m:
            model = _fit(candidate, {**res.hparams, "seed": seed}, split)
            runs.append(_eval(model, split, "test", s))
        res.fit_s += m.seconds
        res.peak_rss_mb = max(res.peak_rss_mb, m.peak_rss_mb)
        log.info("%s seed %d test %s=%.5f", candidate.name, seed, s.metric,
                 runs[-1].metrics[metric_key(runs[-1].metrics, s.metric)])  # fmt: skip
    floats = [k for k, v in first.metrics.items() if isinstance(v, float | np.floating)]
    res.test = rounded_metrics(
        {**first.metrics, **{k: np.mean([r.metrics[k] for r in runs]) for k in floats}}
    )
    res.per_user = {k: np.mean([r.per_user[k] for r in runs], axis=0) for k in first.per_user}
    key = metric_key(first.metrics, s.metric)
    values = [float(r.metrics[key]) for r in runs]
    res.seeds = {
        "seeds": list(candidate.seeds),
        f"test_{key}": [round(v, 6) for v in values],
        "mean": round(float(np.mean(values)), 6),
        "std": round(float(np.std(values, ddof=1)), 6),
        "fit_seconds_all_seeds": round(res.fit_s, 1),
    }


def refit_summary(trained_only: EvalResult, refitted: EvalResult, s: QualitySettings) -> dict:
    """The test metric of the chosen setting fitted on train alone and on train + validation."""
    key = metric_key(refitted.metrics, s.metric)
    t = paired_test(refitted.per_user[key], trained_only.per_user[key], method=s.significance)
    return {
        "fitted_on": "train + validation",
        f"test_{key}_train_only": round(float(trained_only.metrics[key]), 6),
        f"test_{key}_refit": round(float(refitted.metrics[key]), 6),
        "diff": round(float(t.diff), 6),
        "p_value": float(t.p_value),
    }


def neighbourhood(
    candidate: Candidate,
    hparams: dict,
    chosen: EvalResult,
    split: Split,
    s: QualitySettings,
    fitted: dict[str, Recommender] | None = None,
) -> list[dict]:
    """Test scores at half and double each tuned numeric hyperparameter, with a paired test
    against ``chosen``, the test result of the tuned ``hparams`` fitted on the same data.

    Models already fitted during tuning (``fitted``, keyed by hyperparameters) are reused.
    """
    rows = []
    key = metric_key(chosen.metrics, s.metric)
    fitted = fitted or {}
    for hp in neighbours(hparams):
        model = fitted.get(hparams_key(hp)) or _fit(candidate, hp, split)
        res = _eval(model, split, "test", s)
        test = paired_test(res.per_user[key], chosen.per_user[key], method=s.significance)
        rows.append(
            {
                "hparams": hp,
                key: round(float(res.metrics[key]), 6),
                "diff_vs_tuned": round(float(test.diff), 6),
                "p_value": float(test.p_value),
            }
        )
    return rows


def run_quality(
    split: Split, candidates: Sequence[Candidate], s: QualitySettings
) -> list[ModelResult]:
    """Every candidate tuned and tested; each compared with the best by a paired test."""
    results = []
    for candidate in candidates:
        log.info("benchmarking %s on %s (%s)", candidate.name, split.name, s.protocol)
        res = run_candidate(candidate, split, s)
        results.append(res)
    compare_results(results, s)
    return results


def compare_results(results: Sequence[ModelResult], s: QualitySettings) -> None:
    """Each result's paired test against the best, and each trained model's against the best
    untrained baseline, set in place."""
    for res in results:
        res.significance, res.vs_best_baseline = {}, {}
    if not results:
        return
    key = metric_key(results[0].test, s.metric)
    best = max(results, key=lambda r: r.test[key])
    for res in results:
        if res is not best:
            res.significance = compare(res, best, key, s)
    baselines = [r for r in results if not r.trained]
    if baselines and len(baselines) < len(results):
        best_baseline = max(baselines, key=lambda r: r.test[key])
        for res in results:
            if res.trained:
                res.vs_best_baseline = compare(res, best_baseline, key, s)


def compare(res: ModelResult, other: ModelResult, key: str, s: QualitySettings) -> dict:
    """Paired test of ``res`` against ``other`` on the same test targets."""
    t = paired_test(res.per_user[key], other.per_user[key], method=s.significance)
    return {
        "best": other.name,
        "metric": key,
        "diff": round(float(t.diff), 6),
        "ci95": [round(float(t.ci_low), 6), round(float(t.ci_high), 6)],
        "p_value": float(t.p_value),
        "method": t.method,
    }


def rounded_metrics(metrics: dict) -> dict:
    """Float metrics to 6 decimals, as reports keep them."""
    return {
        k: (round(float(v), 6) if isinstance(v, float | np.floating) else v)
        for k, v in metrics.items()
    }
