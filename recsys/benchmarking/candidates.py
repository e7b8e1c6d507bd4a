"""The model lists benchmarks and the main job run: every baseline with its tuning grid."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from recsys.baselines.registry import BASELINES, DEFAULT_GRIDS, make_baseline
from recsys.benchmarking.quality import Candidate
from recsys.data.interactions import Split

DEFAULT_MODELS = (
    "popularity",
    "popularity_recent",
    "item_knn",
    "ease",
    "als",
    "bpr",
    "content_based",
)
# Trained with recsys.training; imported only when asked for (they pull in torch and torchrec).
# Benchmarks give them a synthetic world's token context.
SEQUENTIAL_MODELS = ("sasrec", "two_tower")
TWO_TOWER_MODELS = ("two_tower",)
# Tuned models whose neighbourhood (x0.5 / x2 of each hyperparameter) is checked on test.
NEIGHBOURHOOD_CHECKED = ("item_knn", "ease")


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
    context=None,
    tables=None,
) -> list[Candidate]:
    """Candidates for ``names``, skipping those the data cannot support (and saying why).

    ``popularity_recent`` needs real timestamps (file order is not time across users);
    ``content_based`` needs item features. Sequential models (``sasrec``) early-stop on the
    split's validation targets under ``protocol`` and read a world's token ``context`` when
    given (``recsys.benchmarking.sequential``); ``two_tower`` also reads the world's
    ``tables`` when given (``recsys.benchmarking.two_tower``).
    """
    grids = {**DEFAULT_GRIDS, **(grids or {})}
    out = []
    for name in names:
        if name in TWO_TOWER_MODELS:
            from recsys.benchmarking.two_tower import two_tower_candidate

            out.append(
                two_tower_candidate(
                    name,
                    split,
                    protocol=protocol,
                    context=context,
                    tables=tables,
                    grid=grids.get(name),
                )
            )
            continue
        if name in SEQUENTIAL_MODELS:
            from recsys.benchmarking.sequential import sequential_candidate

            out.append(
                sequential_candidate(
                    name, split, protocol=protocol, context=context, grid=grids.get(name)
                )
            )
            continue
        if name == "popularity_recent":
            if not timestamps:
                continue
            grid = grids.get(name) or recent_windows(split)
            out.append(Candidate(name, partial(make_baseline, "popularity"), tuple(grid)))
            continue
        if name not in BASELINES:
            raise KeyError(f"unknown model {name!r}; known: {sorted(BASELINES)}")
        if name == "content_based" and split.item_features is None:
            continue
        out.append(
            Candidate(
                name,
                partial(make_baseline, name),
                tuple(grids[name]),
                neighbourhood=name in NEIGHBOURHOOD_CHECKED,
            )
        )
    return out


def quick_grids() -> dict[str, list[dict]]:
    """One representative point per model, for smoke runs and tests."""
    quick = {
        name: grid[len(grid) // 2 : len(grid) // 2 + 1] for name, grid in DEFAULT_GRIDS.items()
    }
    quick["sasrec"] = [{"max_epochs": 2}]
    quick["two_tower"] = [{"max_epochs": 2}]
    return quick
