"""The model families ``recsys-train`` trains, and how a ``model`` config section builds one.

A ``model`` section names its family (``name``: ``sasrec`` or ``two_tower``) and holds three
kinds of keys: the family's typed architecture fields (``SequentialConfig`` or
``TwoTowerConfig``), a ``loss`` section (``LossConfig`` or ``TwoTowerLossConfig``) and the
recommender's own settings (windows, side features, repeat-bonus scales ...). Unknown keys are
an error that lists the known ones, so a typo in an override cannot pass silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from recsys.baselines.base import Recommender
from recsys.models.sequential import SequentialConfig
from recsys.models.sequential_recommender import SequentialRecommender, Validation
from recsys.tasks.sequential import LossConfig
from recsys.training.data import SequentialData
from recsys.training.trainer import TrainerConfig


def _names(value) -> tuple:
    return tuple(value or ())


@dataclass(frozen=True)
class Family:
    """One model family: its architecture and loss configs and the recommender's settings."""

    architecture: type
    loss: type
    settings: Mapping[str, Callable]  # recommender keyword -> cast from the config value
    sizes: tuple[str, ...]  # architecture fields filled from the data


def _families() -> dict[str, Family]:
    from recsys.models.two_tower import TwoTowerConfig
    from recsys.tasks.two_tower import TwoTowerLossConfig

    return {
        "sasrec": Family(
            SequentialConfig,
            LossConfig,
            {
                "side_features": _names,
                "windows": str,
                "targets": str,
                "live_training": bool,
                "target_lag_s": float,
                "random_target_lag": bool,
                "repeat_scales": _names,
            },
            ("n_products", "n_streamers"),
        ),
        "two_tower": Family(
            TwoTowerConfig,
            TwoTowerLossConfig,
            {
                "heads": _names,
                "side_features": _names,
                "keywords": bool,
                "fresh_only": bool,
                "query_lag_s": float,
                "repeat_scales": _names,
                "utc_offset_hours": int,
            },
            ("n_users", "n_products", "n_streamers", "n_profile"),
        ),
    }


MODELS = ("sasrec", "two_tower")


def model_settings(model: Mapping) -> dict:
    """Recommender keyword arguments from a ``model`` config section: ``name`` (the family),
    the typed architecture (``model``), ``loss`` and the family's own settings."""
    m = dict(model)
    name = m.pop("name", "sasrec")
    if name not in MODELS:
        raise ValueError(f"model.name must be one of {MODELS}, got {name!r}")
    family = _families()[name]
    out = {"name": name, "loss": family.loss(**(m.pop("loss", None) or {}))}
    out.update({k: cast(m.pop(k)) for k, cast in family.settings.items() if k in m})
    known = {f.name for f in fields(family.architecture)} - set(family.sizes)
    unknown = sorted(set(m) - known)
    if unknown:
        allowed = sorted(known | set(family.settings) | {"loss", "name"})
        raise ValueError(f"model config ({name}): unknown keys {unknown}; known: {allowed}")
    out["model"] = family.architecture(**m)
    return out


def build_recommender(
    cfg: Mapping,
    data: SequentialData,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    validate: bool = True,
) -> Recommender:
    """The model of ``cfg`` for ``data``, validated on every head under the data's protocol."""
    from recsys.training.data import DataConfig, for_protocol

    settings = model_settings(cfg["model"])
    name = settings.pop("name")
    trainer = TrainerConfig(**cfg["trainer"])
    data_cfg = DataConfig(**cfg["data"])
    validation = None
    if validate:
        validation = Validation(
            splits={h: for_protocol(s, data_cfg.val_protocol) for h, s in data.splits.items()},
            protocol=data_cfg.val_protocol,
            max_users=trainer.val_max_users,
            seed=trainer.seed,
        )
    common = {
        **settings,
        "trainer": trainer,
        "context": data.context,
        "validation": validation,
        "run_dir": run_dir,
        "resume": resume,
        "extra_state": {"config": dict(cfg), "vocabularies": data.vocabularies()},
    }
    if name == "sasrec":
        return SequentialRecommender(**common)
    return _two_tower(common, data)


def _two_tower(settings: dict, data: SequentialData) -> Recommender:
    from recsys.data.world_features import WorldFeatures
    from recsys.models.two_tower_recommender import TwoTowerRecommender

    world = None
    if data.tables is not None and data.context is not None:
        v = data.context.vocabs
        world = WorldFeatures.from_tables(
            data.tables, users=v.user, products=v.product, streamers=v.streamer
        )
    return TwoTowerRecommender(**settings, world=world)


def head_vectors(rec: Recommender, head: str, at: int | None = None) -> torch.Tensor:
    """(n_entities, dim) candidate-side vectors of a head (rows 0 and 1 reserved): the
    two-tower's candidate tower (rooms showing their product on show at ``at``), or a
    sequential model's output embeddings."""
    if hasattr(rec, "candidate_embeddings"):
        return torch.from_numpy(rec.candidate_embeddings(head, at=at))
    return rec.model.head_weight(head)
