"""From a registered model's name and settings to a recommender ready to fit.

Two callers build trained recommenders: a training run (``build_recommender``: the ``model``,
``loss``, ``task`` and ``trainer`` sections of its configuration, validated on every head of its
data) and the quality benchmark (``make_trained``: a flat grid point tuned and tested like every
baseline, validated on the benchmark split's head). Both go through the registry's
``ModelSpec``, so a newly registered model is trained, benchmarked and served the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from recsys.core import Recommender
from recsys.data.interactions import Split
from recsys.data.splits import for_protocol
from recsys.data.tables import LiveCommerceTables
from recsys.inputs.tokens import TokenContext
from recsys.inputs.world_features import WorldFeatures
from recsys.recommenders.data import DataConfig, SequentialData
from recsys.recommenders.registry import ModelSpec, model_settings, model_spec
from recsys.training.trainer import TrainerConfig
from recsys.training.validation import Validation

ROUTES = ("task", "model", "loss", "trainer")  # where a flat key goes; first match wins
TRAINER_KEYS = set(TrainerConfig.__dataclass_fields__)


def world_features(
    spec: ModelSpec, context: TokenContext | None, tables: LiveCommerceTables | None
) -> WorldFeatures | None:
    """The world's entity features when the model reads them and the data is a world."""
    if not spec.world_features or context is None or tables is None:
        return None
    v = context.vocabs
    return WorldFeatures.from_tables(tables, users=v.user, products=v.product, streamers=v.streamer)


def lag_seconds(spec: ModelSpec, task: dict, split: Split) -> dict:
    """``task`` with its lags (fractions of the split's validation window) in seconds."""
    out = dict(task)
    for key, seconds_key in spec.lags.items():
        fraction = float(out.pop(key, 0.0))
        if fraction < 0:
            raise ValueError(f"{spec.name}: task.{key} must be >= 0, got {fraction}")
        window = split.meta.get("test_ts", 0) - split.meta.get("valid_ts", 0)
        if fraction > 0 and window <= 0:
            raise ValueError(
                f"{spec.name}: task.{key} is a fraction of the validation window, and split "
                f"{split.name!r} ({split.meta.get('protocol')}) has no time window: set it to 0"
            )
        out[seconds_key] = round(fraction * window)
    return out


def instantiate(
    spec: ModelSpec, split: Split, *, world: WorldFeatures | None = None, **kwargs
) -> Recommender:
    """The spec's recommender over its module, its lags read off ``split`` (``world`` only for
    models that read it)."""
    if spec.world_features:
        kwargs["world"] = world
    return spec.recommender(module=spec.module, **lag_seconds(spec, kwargs, split))


def build_recommender(
    cfg: Mapping,
    data: SequentialData,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    validate: bool = True,
) -> Recommender:
    """The model of ``cfg`` for ``data``, validated on every head under the data's protocol."""
    settings = model_settings(cfg)
    spec = model_spec(settings.pop("name"))
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
    return instantiate(
        spec,
        data.train_split,
        world=world_features(spec, data.context, data.tables),
        **settings,
        trainer=trainer,
        context=data.context,
        validation=validation,
        run_dir=run_dir,
        resume=resume,
        extra_state={"config": dict(cfg), "vocabularies": data.vocabularies()},
    )


def route(spec: ModelSpec, hparams: Mapping) -> dict[str, dict]:
    """``{task, model, loss, trainer}`` keyword arguments from one flat grid point (``loss``
    with a string value names the loss). Lists become tuples (configs are frozen)."""
    keys = {"task": set(spec.settings), "model": spec.architecture_keys(),
            "loss": spec.loss_keys(), "trainer": TRAINER_KEYS}  # fmt: skip
    out: dict[str, dict] = {r: {} for r in ROUTES}
    for key, value in hparams.items():
        if key == "loss" and isinstance(value, str):
            key = "name"
        target = next((r for r in ROUTES if key in keys[r]), None)
        if target is None:
            known = sorted(set().union(*keys.values()))
            raise KeyError(f"{spec.name}: unknown hyperparameter {key!r}; known: {known}")
        out[target][key] = tuple(value) if isinstance(value, list) else value
    return out


def split_head(split: Split, *, world: bool) -> str:
    """The head a split's targets need: the room head for a world's room split."""
    return "streamer" if world and split.meta.get("target") == "room" else "product"


def make_trained(
    name: str,
    split: Split,
    *,
    protocol: str,
    context: TokenContext | None = None,
    world: WorldFeatures | None = None,
    **hparams,
) -> Recommender:
    """A registered model for a benchmark ``split``, early-stopped on its validation targets."""
    spec = model_spec(name)
    defaults = spec.world_defaults if context is not None else spec.stream_defaults
    r = route(spec, {**defaults, **hparams})
    trainer = TrainerConfig(**{**spec.benchmark_trainer, **r["trainer"]})
    head = split_head(split, world=context is not None)
    if "heads" in spec.settings:  # train only the evaluated head: the other doubles the time
        r["task"].setdefault("heads", (head,))
    validation = Validation(
        splits={head: split}, protocol=protocol, max_users=trainer.val_max_users, seed=trainer.seed
    )
    return instantiate(
        spec,
        split,
        world=world,
        model=spec.architecture(**r["model"]),
        loss=spec.loss(**r["loss"]),
        trainer=trainer,
        head=head,
        context=context,
        validation=validation,
        **r["task"],
    )
