"""The sequential model as a benchmark candidate, tuned and tested like every baseline.

A grid point is a flat dict of hyperparameters; each key is routed to the config that has it:
the architecture (``SequentialConfig``: ``dim``, ``dropout``, ``maxlen`` ...), the loss
(``loss`` = the loss name, ``n_negatives``, ``gbce_t`` ...), the trainer (``lr``,
``max_epochs``, ``patience``, ``device`` ...) or the recommender (``windows``,
``targets``, ``side_features``). Early stopping validates on the benchmark split's
validation targets under the benchmark's protocol. On a synthetic world the model reads the
world's full token streams (room entries and product actions) and predicts the split's target
kind with the matching head.
"""

from __future__ import annotations

from dataclasses import fields
from functools import partial

from recsys.benchmarking.quality import Candidate
from recsys.data.datasets import load_dataset
from recsys.data.interactions import Split
from recsys.data.tokens import TokenContext, world_context
from recsys.models.sequential import SequentialConfig
from recsys.models.sequential_recommender import SequentialRecommender, Validation
from recsys.tasks.sequential import LossConfig
from recsys.training.trainer import TrainerConfig

SEQUENTIAL_MODELS = ("sasrec",)
# Klenitskiy & Vasilev's SASRec+ setting: full cross-entropy, d=64, 2 blocks, 1 head.
DEFAULT_GRID: tuple[dict, ...] = ({},)
_MODEL_KEYS = {f.name for f in fields(SequentialConfig)} - {"n_products", "n_streamers"}
_LOSS_KEYS = {f.name for f in fields(LossConfig)} - {"name"}
_TRAINER_KEYS = {f.name for f in fields(TrainerConfig)}
_ADAPTER_KEYS = {"windows", "targets", "live_training", "repeat_scales", "side_features"}
BENCHMARK_TRAINER = {"progress": False, "checkpoint": False}


def route_hparams(hparams: dict) -> tuple[dict, dict, dict, dict]:
    """(model, loss, trainer, adapter) keyword arguments from one flat grid point."""
    model, loss, trainer, adapter = {}, {}, {}, {}
    for key, value in hparams.items():
        if key == "loss":
            loss["name"] = value
        elif key in _ADAPTER_KEYS:
            adapter[key] = value
        elif key in _MODEL_KEYS:
            model[key] = value
        elif key in _LOSS_KEYS:
            loss[key] = value
        elif key in _TRAINER_KEYS:
            trainer[key] = value
        else:
            known = sorted(_MODEL_KEYS | _LOSS_KEYS | _TRAINER_KEYS | _ADAPTER_KEYS | {"loss"})
            raise KeyError(f"sasrec: unknown hyperparameter {key!r}; known: {known}")
    return model, loss, trainer, adapter


def make_sequential(
    split: Split, *, protocol: str, context: TokenContext | None = None, **hparams
) -> SequentialRecommender:
    """A sequential recommender for ``split``, early-stopped on its validation targets."""
    model, loss, trainer, adapter = route_hparams(hparams)
    trainer_cfg = TrainerConfig(**{**BENCHMARK_TRAINER, **trainer})
    head = "streamer" if context is not None and split.meta.get("target") == "room" else "product"
    validation = Validation(
        splits={head: split},
        protocol=protocol,
        max_users=trainer_cfg.val_max_users,
        seed=trainer_cfg.seed,
    )
    return SequentialRecommender(
        model=SequentialConfig(**model),
        loss=LossConfig(**loss),
        trainer=trainer_cfg,
        head=head,
        context=context,
        validation=validation,
        **adapter,
    )


def sequential_candidate(
    name: str,
    split: Split,
    *,
    protocol: str,
    context: TokenContext | None = None,
    grid: tuple[dict, ...] | list[dict] | None = None,
) -> Candidate:
    if name not in SEQUENTIAL_MODELS:
        raise KeyError(f"unknown sequential model {name!r}; known: {SEQUENTIAL_MODELS}")
    build = partial(make_sequential, split, protocol=protocol, context=context)
    return Candidate(name, build, tuple(grid or DEFAULT_GRID))


def benchmark_context(dataset: str, *, seed: int = 0, data_dir=None) -> TokenContext | None:
    """A synthetic world's token context (None for public datasets)."""
    loaded = load_dataset(dataset, data_dir, seed=seed)
    return world_context(loaded.tables) if loaded.tables is not None else None
