"""The ranker's training run on a synthetic world and its offline comparison (``recsys-rank``).

Time windows. A two-tower run (``recsys-train model=two_tower_live``) trains on the world's
events before its live split's ``valid_ts``; the ranker reads its score as the feature
``retrieval_score``. Impressions the ranker trains on must lie after ``valid_ts``, or the
two-tower would score pairs it was trained on and ESMM would learn to trust an in-sample score
that is weaker at serving time. So, with ``end`` the end of the world::

    ESMM train   the first train_share of the room entries in [valid_ts, test_ts)
    ESMM valid   the rest of them                        (early stopping)
    test         [test_ts, end]                          (ESMM test AUCs; orderings compared)

The two-tower never trained on the first two windows (its early stopping and repeat-bonus
scale did read that window's targets: a few scalars, not weights) and neither model saw the
test window. On ``synthetic-small`` with the default 10 % / 10 % split this gives about 2.2
days for the ranker (some 15,800 room entries: ~11,800 training and ~3,900 validation
requests of 10 impressions each, every entry taken by default) and 1.7 days of test (~15,500
entries, 10,000 sampled, 2,000 of them ranked over every live product). Training the
two-tower with a larger ``data.valid_frac`` leaves the ranker a longer window. Without a
two-tower the same cut-offs are computed from the world, and ``retrieval_score`` is left out.

Impressions come from the uniform random logging policy (``impression_log``); features from
``CandidateFeaturizer`` with the platform's coupon drop schedule. ESMM variants: every
feature; without the KOL features (``offline_eval.KOL_FEATURES``); without the two-tower
score. Orderings compared on the test requests over the same live candidates: the logging
policy, recent popularity, the two-tower score alone (the static ordering the ranker
re-ranks), the blend (and without KOL weights), each ESMM variant (pCTCVR) and the truth.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.live import target_events
from recsys.data.splits import time_cutoffs
from recsys.data.tables import LiveCommerceTables, load_tables, read_manifest
from recsys.datasets import world_folder
from recsys.ranking.candidate_features import FEATURE_NAMES, CandidateFeaturizer
from recsys.ranking.esmm_training import (
    ESMM_YAML,
    ImpressionDataset,
    esmm_metrics,
    esmm_settings,
    fit_esmm,
)
from recsys.ranking.offline_eval import (
    KOL_FEATURES,
    Orderings,
    compare_orderings,
    eval_pairs,
    popularity_scores,
    seed_summary,
    without_kol,
)
from recsys.ranking.ranker import BLEND_YAML, BlendWeights, Ranker
from recsys.ranking.upstream import two_tower_scores
from recsys.recommenders.data import world_folder_of
from recsys.recommenders.restore import restore
from recsys.simulation.config import SECONDS_PER_DAY
from recsys.simulation.impressions import ImpressionLog, impression_log
from recsys.simulation.response import WorldTruth
from recsys.simulation.truth import read_coupon_drops

log = logging.getLogger(__name__)

RANDOM, POPULARITY, TWO_TOWER = "random (logging policy)", "popularity 24h", "two-tower (static)"
BLEND, BLEND_NO_KOL, TRUTH = "blend", "blend without KOL", "truth (best possible)"
LEARNED, NO_KOL, NO_TT = "learned (pCTCVR)", "learned without KOL", "learned without two-tower"
TWO_TOWER_FEATURES = ("retrieval_score", "has_retrieval_score")
NO_UPSTREAM = ("sequential_score", "has_sequential_score")  # no sequential model feeds it here
COMPARE = ((LEARNED, BLEND), (LEARNED, NO_KOL), (BLEND, BLEND_NO_KOL), (LEARNED, NO_TT),
           (LEARNED, POPULARITY))  # fmt: skip
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class RankWorld:
    """A synthetic world, its split times and (optionally) a trained two-tower."""

    name: str
    folder: Path
    tables: LiveCommerceTables
    truth: WorldTruth | None  # None: no planted truth (a platform's logs; ranking.logged)
    valid_ts: int
    test_ts: int
    end_ts: int
    two_tower: object | None = None  # a TwoTowerRecommender over the same world
    checkpoint: str | None = None

    @property
    def coupon_drops(self) -> pd.DataFrame | None:
        return read_coupon_drops(self.folder)


def _world(name, folder, tables, valid_ts, test_ts, **kwargs) -> RankWorld:
    folder = Path(folder)
    span = read_manifest(folder).get("time_range") or [None, None]
    end_ts = int(span[1]) if span[1] is not None else int(tables.events["ts"].max())
    truth = WorldTruth.from_folder(folder) if (folder / "truth").is_dir() else None
    return RankWorld(name, folder, tables, truth, int(valid_ts), int(test_ts), end_ts, **kwargs)


def world_from_checkpoint(
    checkpoint: str | Path, *, data_dir: str | None = None, cache_dir: str | None = None
) -> RankWorld:
    """The world a two-tower run trained on, its split times and the restored model."""
    restored = restore(checkpoint, data_dir=data_dir, cache_dir=cache_dir)
    cfg, data = restored.data_config, restored.data
    if data.tables is None:
        raise ValueError(f"{restored.path}: trained on {cfg.name!r}, not a synthetic world")
    folder = world_folder_of(cfg)
    meta = data.train_split.meta
    return _world(cfg.name, folder, data.tables, meta["valid_ts"], meta["test_ts"],
                  two_tower=restored.recommender.for_head("product"),
                  checkpoint=str(restored.path))  # fmt: skip


def world_by_name(
    name: str,
    *,
    seed: int = 0,
    cache_dir: str | None = None,
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    path: str | None = None,
) -> RankWorld:
    """A world without a two-tower (the world folder at ``path``, else the named synthetic
    world); split times as ``live_time_split`` would place them."""
    folder = Path(path) if path is not None else world_folder(name, seed, cache_dir)
    if folder is None:
        raise ValueError(f"{name!r} is not a live-commerce world: the ranker needs room entries")
    tables = load_tables(folder)
    valid_ts, test_ts = time_cutoffs(target_events(tables, "product").inter.ts, valid_frac,
                                     test_frac)  # fmt: skip
    return _world(name, folder, tables, valid_ts, test_ts)


@dataclass(frozen=True)
class RankSettings:
    train_requests: int | None = None  # None: every room entry in the window
    valid_requests: int | None = None
    test_requests: int | None = 10_000
    eval_requests: int = 2_000  # test requests ranked over every live candidate
    train_share: float = 0.75  # of the room entries in [valid_ts, test_ts) that train ESMM
    seed: int = 0  # requests, logged lists and outcomes
    esmm_seeds: tuple[int, ...] = (0,)  # ESMM training seeds (the first is saved and listed)
    threads: int = 1
    k: int = 10
    mode: str = "learned"  # the ranker saved: learned (ESMM) | blend
    blend_yaml: str | None = None  # default conf/ranker/blend.yaml
    esmm_yaml: str | None = None  # default conf/ranker/esmm.yaml

    def __post_init__(self) -> None:
        object.__setattr__(self, "esmm_seeds", tuple(int(s) for s in self.esmm_seeds))
        if self.mode not in ("learned", "blend"):
            raise ValueError(f"RankSettings.mode must be 'learned' or 'blend', got {self.mode!r}")
        if not 0.0 < self.train_share < 1.0 or not self.esmm_seeds or self.eval_requests < 1:
            raise ValueError(f"RankSettings: need 0 < train_share < 1, seeds and eval requests: "
                             f"{self}")  # fmt: skip


def windows(world: RankWorld, train_share: float) -> dict[str, tuple[int, int]]:
    """[start, end) of each split's room entries (see the module docstring); ESMM train and
    valid split the entries between the cut-offs by count, not by time (nights are quiet)."""
    ev = world.tables.events
    ts = ev.loc[ev["event_type"] == "enter", "ts"].to_numpy(np.int64)
    between = np.sort(ts[(ts >= world.valid_ts) & (ts < world.test_ts)])
    if len(between) < 2:
        raise ValueError(
            f"{world.name}: fewer than 2 room entries between the cut-offs {world.valid_ts} "
            f"and {world.test_ts}; nothing to train a ranker on"
        )
    cut = int(between[int(train_share * (len(between) - 1))])
    return {"train": (world.valid_ts, cut), "valid": (cut, world.test_ts),
            "test": (world.test_ts, world.end_ts + 1)}  # fmt: skip


def _timed(fn, *args, **kwargs):
    began = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - began


def impression_logs(world: RankWorld, settings: RankSettings) -> dict[str, tuple]:
    """(ImpressionLog, seconds) per split, uniform random logging policy."""
    sizes = dict(zip(SPLITS, (settings.train_requests, settings.valid_requests,
                              settings.test_requests), strict=True))  # fmt: skip
    out = {}
    for i, (name, (lo, hi)) in enumerate(windows(world, settings.train_share).items()):
        n = _at_most_the_entries(world, name, sizes[name], lo, hi)
        # Only the test window's candidates are read again (the ranked evaluation requests).
        out[name] = _timed(impression_log, world.truth, world.tables, n_requests=n,
                           seed=settings.seed + i, start_ts=lo, end_ts=hi,
                           keep_candidates=name == "test")  # fmt: skip
        log.info("%s impressions: %d requests in %.1f s", name, len(out[name][0].requests),
                 out[name][1])  # fmt: skip
    return out


def _at_most_the_entries(world: RankWorld, name: str, n: int | None, lo, hi) -> int | None:
    """``n`` requests, or every room entry of the window when it holds fewer (a small world)."""
    if n is None:
        return None
    ev = world.tables.events
    ts = ev.loc[ev["event_type"] == "enter", "ts"]
    available = int(((ts >= lo) & (ts < hi)).sum())
    if n > available:
        log.info("%s: %d requests asked, the window holds %d room entries: taking every one",
                 name, n, available)  # fmt: skip
        return available
    return n


def generation_stats(logs: dict[str, tuple[ImpressionLog, float]]) -> dict:
    out = {}
    for name, (lg, seconds) in logs.items():
        imp = lg.impressions
        out[name] = {
            "requests": len(lg.requests),
            "candidates_per_request": lg.n_candidates / max(len(lg.requests), 1),
            "impressions": len(imp),
            "seconds": round(seconds, 2),
            "impressions_per_s": round(len(imp) / max(seconds, 1e-9)),
            "ctr": float(imp["click"].mean()),
            "cvr": float(imp["conversion"].sum() / max(imp["click"].sum(), 1)),
        }
    return out


def with_retrieval(world: RankWorld, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the two-tower's ``retrieval_score`` column (none without a two-tower)."""
    if world.two_tower is None:
        return frame
    return frame.assign(retrieval_score=two_tower_scores(world.two_tower, frame))


def model_features(world: RankWorld) -> tuple[str, ...]:
    """Features the ESMM reads: every candidate feature but upstream scores nobody supplies."""
    absent = NO_UPSTREAM + (() if world.two_tower is not None else TWO_TOWER_FEATURES)
    return tuple(n for n in FEATURE_NAMES if n not in absent)


def variants(world: RankWorld) -> dict[str, tuple[str, ...]]:
    names = model_features(world)
    out = {LEARNED: names, NO_KOL: tuple(n for n in names if n not in KOL_FEATURES)}
    if world.two_tower is not None:
        out[NO_TT] = tuple(n for n in names if n not in TWO_TOWER_FEATURES)
    return out


def featurize(world: RankWorld, frames: dict[str, pd.DataFrame]) -> tuple[dict, dict]:
    """Features of each frame's rows (one pass over the event log for all of them) and the
    seconds spent on two-tower scores, the featurizer's index and the features."""
    scored, score_s = _timed(lambda: {n: with_retrieval(world, f) for n, f in frames.items()})
    log.info("two-tower scores of %d rows in %.1f s", sum(map(len, frames.values())), score_s)
    featurizer, index_s = _timed(CandidateFeaturizer, world.tables,
                                 coupon_drops=world.coupon_drops)  # fmt: skip
    rows = pd.concat(list(scored.values()), ignore_index=True)
    everything, feature_s = _timed(featurizer.transform, rows)
    log.info("features of %d rows in %.1f s", len(rows), feature_s)
    ends = np.cumsum([0] + [len(f) for f in frames.values()])
    out = {n: everything.take(np.arange(ends[i], ends[i + 1])) for i, n in enumerate(frames)}
    seconds = {"two_tower_scores": score_s, "feature_index": index_s, "features": feature_s}
    return out, {"rows": len(rows)} | {k: round(v, 2) for k, v in seconds.items()}


def train_esmm(features: dict, logs: dict, names, settings: RankSettings, seed: int) -> dict:
    """One ESMM on the train impressions (early stopping on valid), its test AUCs and times."""
    config = esmm_settings(settings.esmm_yaml or ESMM_YAML)
    trainer = replace(config["trainer"], num_threads=settings.threads, seed=seed)

    def data(split: str) -> ImpressionDataset:
        imp = logs[split][0].impressions
        return ImpressionDataset(features[split].select(names).values, imp["click"],
                                 imp["conversion"])  # fmt: skip

    (model, fit), seconds = _timed(
        fit_esmm, data("train"), data("valid"), hidden=config["hidden"],
        dropout=config["dropout"], ctcvr_weight=config["ctcvr_weight"], trainer=trainer,
    )  # fmt: skip
    ranker = Ranker.learned(model, names, objective=config["objective"], k=settings.k)
    return {
        "ranker": ranker,
        "seconds": seconds,
        "train_seconds": fit.train_seconds,
        "epochs": fit.epochs,
        "best_epoch": fit.best_epoch,
        "impressions_per_s": fit.sequences_per_second,
        "valid": esmm_metrics(model, data("valid")),
        "test": esmm_metrics(model, data("test")),
    }


def fit_variants(world, features, logs, settings: RankSettings) -> dict:
    """(variant, seed) -> ``train_esmm`` record, every variant at every seed."""
    fits = {}
    for seed in settings.esmm_seeds:
        for variant, names in variants(world).items():
            fits[variant, seed] = train_esmm(features, logs, names, settings, seed)
            log.info("%s, seed %d: test %s (%.1f s)", variant, seed,
                     fits[variant, seed]["test"], fits[variant, seed]["seconds"])  # fmt: skip
    return fits


def blend_weights(settings: RankSettings) -> BlendWeights:
    return BlendWeights.from_yaml(settings.blend_yaml or BLEND_YAML)


def orderings(world, test_log, requests, pairs, features, fits, settings) -> dict:
    """Score per pair row (or shown list) of every ordering, in table order."""
    logged = test_log.impressions
    return {
        RANDOM: logged.loc[logged["request_id"].isin(requests["request_id"])],
        **logged_orderings(world, pairs, features, fits, settings),
        TRUTH: pairs["gain"].to_numpy(),
    }


def logged_orderings(world, pairs, features, fits, settings) -> dict:
    """Score per pair row of every ordering that needs no truth, in table order."""
    blend, first = blend_weights(settings), settings.esmm_seeds[0]
    out = {POPULARITY: popularity_scores(world.tables, pairs)}
    if world.two_tower is not None:
        known = features.column("has_retrieval_score") > 0
        out[TWO_TOWER] = np.where(known, features.column("retrieval_score"), np.nan)
    out[BLEND] = blend.score(features)
    out[BLEND_NO_KOL] = without_kol(blend).score(features)
    for variant in variants(world):
        out[variant] = fits[variant, first]["ranker"].score(features)["score"]
    return out


def by_seed(world, requests, pairs, features, fits, a: str, b: str, settings) -> dict:
    """a - b of the learned variants per training seed, and the mean and sd over seeds."""
    out = {}
    for seed in settings.esmm_seeds:
        scored = Orderings(world.truth, requests, pairs, settings.k)
        for name in (a, b):
            scored.add(name, fits[name, seed]["ranker"].score(features)["score"])
        out[f"seed {seed}"] = scored.difference(a, b)
    return out | {"mean over seeds": seed_summary(out, settings.k)}


def evaluate(world, test_log, requests, pairs, features, fits, settings: RankSettings) -> dict:
    """Every ordering over every live candidate of the eval requests, against the truth."""
    named = orderings(world, test_log, requests, pairs, features, fits, settings)
    reference = TWO_TOWER if TWO_TOWER in named else POPULARITY
    result = compare_orderings(world.truth, requests, pairs, named, reference=reference,
                               compare=COMPARE, k=settings.k)  # fmt: skip
    result["kol_ablation_by_seed"] = by_seed(world, requests, pairs, features, fits, LEARNED,
                                             NO_KOL, settings)  # fmt: skip
    if NO_TT in variants(world):
        result["two_tower_ablation_by_seed"] = by_seed(world, requests, pairs, features, fits,
                                                       LEARNED, NO_TT, settings)  # fmt: skip
    return result


def eval_requests(world: RankWorld, test_log: ImpressionLog, settings: RankSettings):
    """A seeded sample of the test requests and every live candidate of each, with gains."""
    n = min(settings.eval_requests, len(test_log.requests))
    requests = test_log.requests.sample(n=n, random_state=settings.seed)
    requests = requests.sort_values("request_id", ignore_index=True)
    return requests, eval_pairs(world.truth, world.tables, requests)


def _plain(fit: dict) -> dict:
    return {k: v for k, v in fit.items() if k != "ranker"}


def run_experiment(world: RankWorld, settings: RankSettings) -> tuple[dict, Ranker]:
    """Impression logs -> features -> ESMM variants -> orderings compared; the record (plain
    values) and the ranker of ``settings.mode`` (ESMM of the first seed, or the blend)."""
    seconds = {}
    logs, seconds["impression_logs"] = _timed(impression_logs, world, settings)
    requests, pairs = eval_requests(world, logs["test"][0], settings)
    frames = {n: logs[n][0].impressions for n in SPLITS} | {"eval": pairs}
    features, feature_note = featurize(world, frames)
    seconds |= {k: v for k, v in feature_note.items() if k != "rows"}
    fits, seconds["esmm"] = _timed(fit_variants, world, features, logs, settings)
    lists, seconds["evaluation"] = _timed(evaluate, world, logs["test"][0], requests, pairs,
                                          features["eval"], fits, settings)  # fmt: skip
    spans = windows(world, settings.train_share)
    record = {
        "world": world.name,
        "checkpoint": world.checkpoint,
        "windows": {n: list(w) for n, w in spans.items()},
        "window_days": {n: round((w[1] - w[0]) / SECONDS_PER_DAY, 2) for n, w in spans.items()},
        "settings": asdict(settings),
        "generation": generation_stats(logs),
        "features": feature_note,
        "model_features": list(model_features(world)),
        "esmm": {f"{name}, seed {seed}": _plain(r) for (name, seed), r in fits.items()},
        "lists": lists,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    if settings.mode == "blend":
        return record, Ranker.blended(blend_weights(settings), k=settings.k)
    return record, fits[LEARNED, settings.esmm_seeds[0]]["ranker"]
