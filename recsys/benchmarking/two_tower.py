"""The two-tower model as a benchmark candidate, tuned and tested like every baseline.

A grid point is a flat dict of hyperparameters, each routed to the config that has it: the
architecture (``TwoTowerConfig``: ``dim``, ``hidden``, ``bag_size``, ``repeat_bonus`` ...), the
loss (``TwoTowerLossConfig``: ``logq``, ``n_mixed``, ``room_weight``), the trainer (``lr``,
``batch_size``, ``max_epochs``, ``patience`` ...) or the recommender (``heads``,
``side_features``, ``keywords``, ``fresh_only``). Early stopping validates on the benchmark
split's validation targets under the benchmark's protocol. On a synthetic world the model reads
the world's token streams and scores the split's target kind with the matching head; given the
world's tables too, it also reads the current room, demographics, the product on show and
(``profile``) profile snapshots.
"""

from __future__ import annotations

from dataclasses import fields
from functools import partial

from recsys.benchmarking.quality import Candidate
from recsys.benchmarking.trained import head_validation, route, split_head
from recsys.data.interactions import Split
from recsys.data.tables import LiveCommerceTables
from recsys.data.tokens import TokenContext
from recsys.data.world_features import WorldFeatures
from recsys.models.two_tower import TwoTowerConfig
from recsys.models.two_tower_recommender import TwoTowerRecommender
from recsys.tasks.two_tower import TwoTowerLossConfig
from recsys.training.trainer import TrainerConfig

TWO_TOWER_MODELS = ("two_tower",)
DEFAULT_GRID: tuple[dict, ...] = ({},)
# Defaults under every grid point, chosen on the validation targets of synthetic-small (live
# protocol, product and room): on a world, a softmax over what was on air at each target's time,
# queries asked up to two days early (a validation window spans about two days), the repeat
# bonus scale calibrated on validation; on item streams (tuned on amazon-games-sasrec), in-batch
# and many mixed negatives with logQ, and no user-id embedding (the bag generalises better).
WORLD_DEFAULTS = {
    "negatives": "live",
    "query_lag_s": 172_800.0,
    "max_epochs": 3,
    "repeat_scales": (1.0, 2.0, 3.0, 4.0, 6.0),
}
STREAM_DEFAULTS = {"negatives": "in_batch", "n_mixed": 2048, "user_id": False, "max_epochs": 20}
_MODEL_KEYS = {f.name for f in fields(TwoTowerConfig)} - {
    "n_users",
    "n_products",
    "n_streamers",
    "n_profile",
}
_LOSS_KEYS = {f.name for f in fields(TwoTowerLossConfig)}
_TRAINER_KEYS = {f.name for f in fields(TrainerConfig)}
_ADAPTER_KEYS = {
    "heads",
    "side_features",
    "keywords",
    "fresh_only",
    "query_lag_s",
    "repeat_scales",
    "utc_offset_hours",
}
BENCHMARK_TRAINER = {"progress": False, "checkpoint": False, "batch_size": 512, "patience": 2}


def route_hparams(hparams: dict) -> tuple[dict, dict, dict, dict]:
    """(model, loss, trainer, adapter) keyword arguments from one flat grid point."""
    keys = {"adapter": _ADAPTER_KEYS, "model": _MODEL_KEYS, "loss": _LOSS_KEYS,
            "trainer": _TRAINER_KEYS}  # fmt: skip
    return route("two_tower", hparams, keys)


def make_two_tower(
    split: Split,
    *,
    protocol: str,
    context: TokenContext | None = None,
    world: WorldFeatures | None = None,
    **hparams,
) -> TwoTowerRecommender:
    """A two-tower recommender for ``split``, early-stopped on its validation targets."""
    defaults = WORLD_DEFAULTS if context is not None else STREAM_DEFAULTS
    model, loss, trainer, adapter = route_hparams({**defaults, **hparams})
    trainer_cfg = TrainerConfig(**{**BENCHMARK_TRAINER, **trainer})
    head = split_head(split, world=context is not None)
    # Only the evaluated head is trained: the other would double the time for no gain here.
    adapter.setdefault("heads", (head,))
    validation = head_validation(split, head, protocol, trainer_cfg)
    return TwoTowerRecommender(
        model=TwoTowerConfig(**model),
        loss=TwoTowerLossConfig(**loss),
        trainer=trainer_cfg,
        head=head,
        context=context,
        world=world,
        validation=validation,
        **adapter,
    )


def two_tower_candidate(
    name: str,
    split: Split,
    *,
    protocol: str,
    context: TokenContext | None = None,
    tables: LiveCommerceTables | None = None,
    grid: tuple[dict, ...] | list[dict] | None = None,
) -> Candidate:
    """The candidate; ``tables`` (with ``context``) adds the world features."""
    if name not in TWO_TOWER_MODELS:
        raise KeyError(f"unknown two-tower model {name!r}; known: {TWO_TOWER_MODELS}")
    world = None
    if tables is not None and context is not None:
        v = context.vocabs
        world = WorldFeatures.from_tables(
            tables, users=v.user, products=v.product, streamers=v.streamer
        )
    build = partial(make_two_tower, split, protocol=protocol, context=context, world=world)
    return Candidate(name, build, tuple(grid or DEFAULT_GRID))
