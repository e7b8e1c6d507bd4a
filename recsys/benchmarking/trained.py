"""What the trained benchmark candidates (sequential, two-tower) share: routing a flat grid
point to the typed configs, the head a split asks for, and its early-stopping validation."""

from __future__ import annotations

from collections.abc import Collection

from recsys.data.interactions import Split
from recsys.training.trainer import TrainerConfig
from recsys.training.validation import Validation

ROUTES = ("adapter", "model", "loss", "trainer")  # first match wins


def route(
    name: str, hparams: dict, keys: dict[str, Collection[str]]
) -> tuple[dict, dict, dict, dict]:
    """(model, loss, trainer, adapter) keyword arguments from one flat grid point; ``keys``
    names the keys of each of ``ROUTES``. Lists become tuples (configs are frozen)."""
    out: dict[str, dict] = {r: {} for r in ROUTES}
    for key, value in hparams.items():
        target = next((r for r in ROUTES if key in keys[r]), None)
        if target is None:
            known = sorted(set().union(*keys.values()))
            raise KeyError(f"{name}: unknown hyperparameter {key!r}; known: {known}")
        out[target][key] = tuple(value) if isinstance(value, list) else value
    return out["model"], out["loss"], out["trainer"], out["adapter"]


def split_head(split: Split, *, world: bool) -> str:
    """The head a split's targets need: the room head for a world's room split."""
    return "streamer" if world and split.meta.get("target") == "room" else "product"


def head_validation(split: Split, head: str, protocol: str, trainer: TrainerConfig) -> Validation:
    return Validation(
        splits={head: split}, protocol=protocol, max_users=trainer.val_max_users, seed=trainer.seed
    )
