"""The sequential model as a benchmark candidate, tuned and tested like every baseline.

A grid point is a flat dict of hyperparameters; each key is routed to the config that has it:
the architecture (``SequentialConfig``: ``dim``, ``dropout``, ``maxlen`` ...), the loss
(``loss`` = the loss name, ``n_negatives``, ``gbce_t``, ``lag_loss_weight`` ...), the trainer
(``lr``, ``max_epochs``, ``patience``, ``device`` ...) or the recommender (``windows``,
``targets``, ``target_lag_s``, ``side_features``). Early stopping validates on the benchmark
split's validation targets under the benchmark's protocol. On a synthetic world the model reads the
world's full token streams (room entries and product actions) and predicts the split's target
kind with the matching head.
"""

from __future__ import annotations

from dataclasses import fields
from functools import partial

from recsys.benchmarking.quality import Candidate
from recsys.benchmarking.trained import head_validation, route, split_head
from recsys.data.datasets import load_dataset
from recsys.data.interactions import Split
from recsys.data.tokens import TokenContext, world_context
from recsys.models.sequential import SequentialConfig
from recsys.models.sequential_recommender import SequentialRecommender
from recsys.tasks.sequential import LossConfig
from recsys.training.trainer import TrainerConfig

SEQUENTIAL_MODELS = ("sasrec",)
# Klenitskiy & Vasilev's SASRec+ setting: full cross-entropy, d=64, 2 blocks, 1 head.
DEFAULT_GRID: tuple[dict, ...] = ({},)
_MODEL_KEYS = {f.name for f in fields(SequentialConfig)} - {"n_products", "n_streamers"}
_LOSS_KEYS = {f.name for f in fields(LossConfig)} - {"name"}
_TRAINER_KEYS = {f.name for f in fields(TrainerConfig)}
_ADAPTER_KEYS = {
    "windows", "targets", "live_training", "target_lag_s", "random_target_lag",
    "repeat_scales", "side_features",
}  # fmt: skip
BENCHMARK_TRAINER = {"progress": False, "checkpoint": False}


def route_hparams(hparams: dict) -> tuple[dict, dict, dict, dict]:
    """(model, loss, trainer, adapter) keyword arguments from one flat grid point; ``loss``
    names the loss."""
    flat = {("name" if k == "loss" else k): v for k, v in hparams.items()}
    keys = {"adapter": _ADAPTER_KEYS, "model": _MODEL_KEYS, "loss": _LOSS_KEYS | {"name"},
            "trainer": _TRAINER_KEYS}  # fmt: skip
    return route("sasrec", flat, keys)


def make_sequential(
    split: Split, *, protocol: str, context: TokenContext | None = None, **hparams
) -> SequentialRecommender:
    """A sequential recommender for ``split``, early-stopped on its validation targets."""
    model, loss, trainer, adapter = route_hparams(hparams)
    trainer_cfg = TrainerConfig(**{**BENCHMARK_TRAINER, **trainer})
    head = split_head(split, world=context is not None)
    validation = head_validation(split, head, protocol, trainer_cfg)
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
