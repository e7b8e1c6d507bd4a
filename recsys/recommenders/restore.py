"""A trained model back from its checkpoint alone: configuration, data and weights.

The checkpoint carries the run's configuration and vocabularies, so the data is rebuilt exactly
as in training (and checked against the saved vocabularies) and the model is rebuilt from it.
``recsys-evaluate``, ``recsys-index`` and serving all start here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from recsys.core import Recommender
from recsys.data.interactions import Split
from recsys.recommenders.build import build_recommender
from recsys.recommenders.data import DataConfig, SequentialData, load_sequential_data
from recsys.recommenders.registry import model_spec
from recsys.training.checkpoint import BEST, CHECKPOINT, load_checkpoint


@dataclass(frozen=True)
class Restored:
    recommender: Recommender
    data: SequentialData
    data_config: DataConfig
    config: dict  # the run's composed configuration
    path: Path  # the checkpoint file


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's best (else latest) checkpoint."""
    path = Path(path)
    if path.is_dir():
        return path / BEST if (path / BEST).is_file() else path / CHECKPOINT
    return path


def restore(
    checkpoint: str | Path,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    cache_dir: str | None = None,
    data_path: str | Path | None = None,
) -> Restored:
    """The trained recommender of ``checkpoint`` in eval mode on ``device``, with its data;
    ``data_dir`` / ``cache_dir`` override where the run found its data; ``data_path`` reads
    another world folder over the same entities (e.g. the same world with more days logged), so
    the model's request features see that history."""
    path = checkpoint_file(checkpoint)
    ckpt = load_checkpoint(path)
    saved = ckpt["config"]
    data_section = dict(saved["data"])
    overrides = (("data_dir", data_dir), ("cache_dir", cache_dir),
                 ("path", None if data_path is None else str(data_path)))  # fmt: skip
    for key, value in overrides:
        if value is not None:
            data_section[key] = value
    data_cfg = DataConfig(**data_section)
    data = load_sequential_data(data_cfg)
    data.check_vocabularies(ckpt["vocabularies"], f"checkpoint {path}")
    config = {**saved, "data": data_section, "trainer": {**saved["trainer"], "device": device}}
    if "task" not in config:
        config = sectioned(config, data.train_split)
    rec = build_recommender(config, data, validate=False)
    split = data.train_split
    model = rec.build(split.train, item_features=split.item_features)
    model.load_state_dict(ckpt["model"])
    model.to(torch.device(device)).eval()
    return Restored(rec, data, data_cfg, config, path)


def sectioned(config: Mapping, split: Split) -> dict:
    """A configuration saved before ``model`` / ``loss`` / ``task`` were separate sections (one
    ``model`` section holding them all, lags in seconds), in today's layout."""
    model = dict(config["model"])
    spec = model_spec(model.get("name", "sasrec"))
    loss = model.pop("loss", None) or {}
    task = {k: model.pop(k) for k in list(model) if k in spec.settings}
    window = split.meta.get("test_ts", 0) - split.meta.get("valid_ts", 0)
    for key, seconds_key in spec.lags.items():
        seconds = float(model.pop(seconds_key, 0.0))
        task[key] = seconds / window if seconds and window > 0 else 0.0
    model.pop("random_target_lag", None)  # a retired setting (never on in a shipped config)
    return {**config, "model": model, "loss": loss, "task": task}


def restore_from_config(cfg: Mapping) -> Restored:
    """``restore`` with the ``checkpoint``, ``device``, ``data_dir``, ``cache_dir`` and
    ``data_path`` of a command's config (``recsys-evaluate``, ``recsys-index``)."""
    return restore(
        cfg["checkpoint"],
        device=cfg.get("device", "cpu"),
        data_dir=cfg.get("data_dir"),
        cache_dir=cfg.get("cache_dir"),
        data_path=cfg.get("data_path"),
    )
