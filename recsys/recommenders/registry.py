"""Every trainable model by name: what ``recsys-train``, the quality benchmark and serving build.

A ``ModelSpec`` ties together the four pieces of a trainable model: the ``nn.Module`` and its
architecture config (``recsys.models``), the loss config of its task (``recsys.tasks``), the
recommender that adapts it to the ``Recommender`` interface (``recsys.recommenders``), and the
task settings that recommender takes (windows, targets, lags, side features ...). Adding a model
is one model file, one task file (or an existing task), one config and one ``register`` call.

A run's configuration has a section per kind of key: ``model`` (``name`` and architecture),
``loss`` and ``task``. Unknown keys are an error that lists the known ones, so a typo in an
override cannot pass silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields

from torch import nn

from recsys.core import Recommender
from recsys.models.sequential import SequentialConfig, SequentialModel
from recsys.models.two_tower import TwoTowerConfig, TwoTowerModel
from recsys.recommenders.sequential import SequentialRecommender
from recsys.recommenders.two_tower import TwoTowerRecommender
from recsys.tasks.sequential import LossConfig
from recsys.tasks.two_tower import TwoTowerLossConfig


def names(value) -> tuple:
    """A list setting as a tuple (configs are frozen)."""
    return tuple(value or ())


@dataclass(frozen=True)
class ModelSpec:
    """One trainable model family and how a configuration builds it."""

    name: str
    module: type[nn.Module]  # built by the recommender as module(architecture, ...)
    architecture: type  # frozen dataclass: the module's architecture config
    loss: type  # frozen dataclass: the task's loss config
    recommender: type[Recommender]  # takes model=, loss=, trainer=, head=, context=, module= ...
    settings: Mapping[str, Callable] = field(default_factory=dict)  # task key -> cast
    sizes: tuple[str, ...] = ()  # architecture fields filled from the data
    world_features: bool = False  # reads a world's entity features (recommender takes world=)
    # Lags set in units of the split's validation window (task key -> recommender seconds key).
    lags: Mapping[str, str] = field(default_factory=dict)
    # Benchmark candidates: grid-point defaults on a world and on item streams, trainer overrides.
    world_defaults: Mapping[str, object] = field(default_factory=dict)
    stream_defaults: Mapping[str, object] = field(default_factory=dict)
    benchmark_trainer: Mapping[str, object] = field(default_factory=dict)

    def architecture_keys(self) -> set[str]:
        return {f.name for f in fields(self.architecture)} - set(self.sizes)

    def loss_keys(self) -> set[str]:
        return {f.name for f in fields(self.loss)}


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a model under ``spec.name``; returns it."""
    MODELS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    MODELS.pop(name, None)


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(MODELS)}")
    return MODELS[name]


def _known(section: str, name: str, given: Mapping, known: set[str]) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(
            f"{section} config ({name}): unknown keys {unknown}; known: {sorted(known)}"
        )


def model_settings(cfg: Mapping) -> dict:
    """Recommender keyword arguments from a run's ``model``, ``loss`` and ``task`` sections:
    ``name`` (the registered model), the typed architecture (``model``), ``loss`` and the
    model's task settings."""
    arch = dict(cfg["model"])
    spec = model_spec(arch.pop("name", "sasrec"))
    loss, task = dict(cfg.get("loss") or {}), dict(cfg.get("task") or {})
    _known("model", spec.name, arch, spec.architecture_keys())
    _known("loss", spec.name, loss, spec.loss_keys())
    _known("task", spec.name, task, set(spec.settings))
    out = {"name": spec.name, "model": spec.architecture(**arch), "loss": spec.loss(**loss)}
    out.update({k: spec.settings[k](v) for k, v in task.items()})
    return out


SEQUENTIAL_TASK = {
    "side_features": names,
    "windows": str,
    "targets": str,
    "live_training": bool,
    "target_lag": float,
    "repeat_scales": names,
}
# A lag is a fraction of the split's validation window: a history scored on validation ends at
# the window's start and its targets lie up to one window later, so training asks for targets
# (or asks queries) that far ahead; on a world with longer windows the lag grows with them.
SEQUENTIAL_LAGS = {"target_lag": "target_lag_s"}

register(
    ModelSpec(
        name="sasrec",
        module=SequentialModel,
        architecture=SequentialConfig,
        loss=LossConfig,
        recommender=SequentialRecommender,
        settings=SEQUENTIAL_TASK,
        sizes=("n_products", "n_streamers", "n_users"),
        lags=SEQUENTIAL_LAGS,
        benchmark_trainer={"progress": False, "checkpoint": False},
    )
)

# Benchmark defaults of the two-tower, chosen on the validation targets of synthetic-small (live
# protocol, product and room): on a world, a softmax over what was on air at each target's time,
# queries asked up to one validation window early, the repeat bonus scale calibrated on
# validation; on item streams (tuned on amazon-games-sasrec), in-batch
# and many mixed negatives with logQ, and no user-id embedding (the bag generalises better).
register(
    ModelSpec(
        name="two_tower",
        module=TwoTowerModel,
        architecture=TwoTowerConfig,
        loss=TwoTowerLossConfig,
        recommender=TwoTowerRecommender,
        settings={
            "heads": names,
            "side_features": names,
            "keywords": bool,
            "fresh_only": bool,
            "query_lag": float,
            "repeat_scales": names,
            "utc_offset_hours": int,
        },
        sizes=("n_users", "n_products", "n_streamers", "n_profile"),
        world_features=True,
        lags={"query_lag": "query_lag_s"},
        world_defaults={
            "negatives": "live",
            "query_lag": 1.0,
            "max_epochs": 3,
            "repeat_scales": (1.0, 2.0, 3.0, 4.0, 6.0),
        },
        stream_defaults={
            "negatives": "in_batch",
            "n_mixed": 2048,
            "user_id": False,
            "max_epochs": 20,
        },
        benchmark_trainer={
            "progress": False,
            "checkpoint": False,
            "batch_size": 512,
            "patience": 2,
        },
    )
)
