"""The model lists benchmarks and the main job run: every baseline with its tuning grid, and
every registered trained model (``recsys.recommenders.registry``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from recsys.baselines.registry import BASELINES, DEFAULT_GRIDS, make_baseline
from recsys.data.interactions import Split
from recsys.data.tables import LiveCommerceTables
from recsys.datasets import load_dataset
from recsys.evaluation.selection import Candidate
from recsys.inputs.tokens import TokenContext, world_context
from recsys.recommenders.build import make_trained, world_features
from recsys.recommenders.registry import MODELS, model_spec

DEFAULT_MODELS = (
    "popularity",
    "popularity_recent",
    "item_knn",
    "ease",
    "als",
    "bpr",
    "content_based",
)
# Tuned models refined on validation beyond their grid (x0.5 / x2 of each hyperparameter while
# that improves) and whose final neighbourhood is checked on test.
NEIGHBOURHOOD_CHECKED = ("item_knn", "ease", "als", "bpr")

log = logging.getLogger(__name__)


def recent_windows(split: Split, fractions: Sequence[float] = (0.02, 0.1, 0.3)) -> list[dict]:
    """Window lengths as fractions of the training time span."""
    ts = split.train.ts
    span = int(ts.max() - ts.min()) if len(ts) else 0
    return [{"window": max(1, int(span * f))} for f in fractions]


def build_candidates(
    split: Split,
    names: Sequence[str] = DEFAULT_MODELS,
    *,
    timestamps: bool = True,
    grids: dict[str, list[dict]] | None = None,
    protocol: str = "full",
    context: TokenContext | None = None,
    tables: LiveCommerceTables | None = None,
    seeds: Sequence[int] = (0,),
    refine: bool = True,
) -> list[Candidate]:
    """Candidates for ``names``, skipping those the data cannot support.

    ``popularity_recent`` needs real timestamps (file order is not time across users);
    ``content_based`` needs item features. Registered trained models (``recsys.recommenders.
    registry``) early-stop on the split's validation targets under ``protocol``, read a world's
    token ``context`` when given, and its ``tables`` too when they use world features; they are
    tuned with the first of ``seeds`` and the chosen setting trained with each of them.
    ``refine=False`` keeps every model to its grid (no refinement, no test neighbourhood).
    """
    grids = {**DEFAULT_GRIDS, **(grids or {})}
    out = []
    for name in names:
        if name in MODELS:
            out.append(
                trained_candidate(name, split, protocol, context, tables, grids.get(name), seeds)
            )
            continue
        if name == "popularity_recent":
            if not timestamps:
                log.warning("popularity_recent skipped: the data has no real timestamps "
                            "(file order is not time across users)")  # fmt: skip
                continue
            grid = grids.get(name) or recent_windows(split)
            out.append(
                Candidate(name, partial(make_baseline, "popularity"), tuple(grid), refit=True)
            )
            continue
        if name not in BASELINES:
            raise KeyError(f"unknown model {name!r}; known: {sorted({*BASELINES, *MODELS})}")
        if name == "content_based" and split.item_features is None:
            log.warning("content_based skipped: the data has no item features")
            continue
        out.append(
            Candidate(
                name,
                partial(make_baseline, name),
                tuple(grids[name]),
                neighbourhood=refine and name in NEIGHBOURHOOD_CHECKED,
                # Every baseline is refitted on train + validation before the test stage.
                refit=True,
            )
        )
    return out


def trained_candidate(
    name: str,
    split: Split,
    protocol: str,
    context: TokenContext | None,
    tables: LiveCommerceTables | None,
    grid: Sequence[dict] | None,
    seeds: Sequence[int] = (0,),
) -> Candidate:
    """A registered model tuned over ``grid`` (default: its defaults alone) with the first seed,
    then trained with every seed."""
    world = world_features(model_spec(name), context, tables)
    build = partial(make_trained, name, split, protocol=protocol, context=context, world=world)
    grid = [{**point, "seed": seeds[0]} for point in (grid or ({},))]
    return Candidate(name, build, tuple(grid), seeds=tuple(seeds))


def benchmark_context(dataset: str, *, seed: int = 0, data_dir=None) -> TokenContext | None:
    """A synthetic world's token context (None for public datasets)."""
    loaded = load_dataset(dataset, data_dir, seed=seed)
    return world_context(loaded.tables) if loaded.tables is not None else None


def quick_grids() -> dict[str, list[dict]]:
    """One representative point per model, for smoke runs and tests."""
    quick = {
        name: grid[len(grid) // 2 : len(grid) // 2 + 1] for name, grid in DEFAULT_GRIDS.items()
    }
    quick.update({name: [{"max_epochs": 2}] for name in MODELS})
    return quick
