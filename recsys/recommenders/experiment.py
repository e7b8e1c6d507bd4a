"""``train(cfg)``: one training run from a composed configuration to its final metrics.

The configuration has six parts (``recsys/conf/train.yaml`` and its groups): ``model`` (the
registered model's name and architecture), ``loss``, ``task`` (what the model is trained on:
windows, targets, lags, side features), ``data`` (dataset and protocols), ``trainer``
(optimisation, device, early stopping, checkpoints) and ``run_dir`` (where checkpoints,
TensorBoard logs and ``metrics.json`` go). Hydra composes it at the command line
(``recsys-train``); this module only reads plain values and turns them into the typed configs
the library takes.

Final metrics are keyed ``<stage>/<head>/<protocol>/<metric>``, e.g.
``test/product/full/ndcg@10`` or ``test/streamer/live/ndcg@10``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from recsys.core import Recommender
from recsys.data.splits import for_protocol
from recsys.evaluation import evaluate
from recsys.recommenders.build import build_recommender
from recsys.recommenders.data import DataConfig, SequentialData, load_sequential_data
from recsys.recommenders.registry import model_settings, model_spec
from recsys.recommenders.sequential import SequentialRecommender
from recsys.recommenders.sequential_stream import follow_streamed
from recsys.training import distributed as sharding
from recsys.training.checkpoint import CHECKPOINT, load_checkpoint
from recsys.training.distributed_trainer import streamed_input
from recsys.training.logger import RunLogger
from recsys.training.trainer import TrainerConfig

log = logging.getLogger(__name__)

# Trainer settings a resumed run may change (they do not alter what is computed).
RESUMABLE_CHANGES = ("max_epochs", "patience", "progress", "num_threads", "log_every_steps")


def as_dict(cfg: DictConfig | Mapping) -> dict:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def final_metrics(
    rec: Recommender,
    data: SequentialData,
    protocols: Sequence[str],
    ks: Sequence[int] = (10, 20, 100),
    stages: Sequence[str] = ("valid", "test"),
) -> dict[str, float]:
    """Every head under every protocol on every stage, all targets."""
    out: dict[str, float] = {}
    for head, split in data.splits.items():
        for protocol in protocols:
            s = for_protocol(split, protocol)
            for stage in stages:
                res = evaluate(rec.for_head(head), s, protocol=protocol, stage=stage, ks=ks)
                out.update(
                    {f"{stage}/{head}/{res.protocol}/{k}": v for k, v in res.metrics.items()}
                )
    return out


def _check_resume(cfg: Mapping, run_dir: Path) -> None:
    path = run_dir / CHECKPOINT
    if not path.is_file():
        log.info("resume: no checkpoint in %s, starting fresh", run_dir)
        return
    saved = load_checkpoint(path)["config"]
    changed = [k for k in ("model", "loss", "task", "data") if saved.get(k) != cfg.get(k)]
    trainer_now, trainer_then = dict(cfg["trainer"]), dict(saved["trainer"])
    for key in RESUMABLE_CHANGES:
        trainer_now.pop(key, None)
        trainer_then.pop(key, None)
    if trainer_now != trainer_then:
        changed.append("trainer")
    if changed:
        raise ValueError(f"resume: {path} was written with a different {', '.join(changed)} config")


def train(cfg: DictConfig | Mapping) -> dict[str, float]:
    """Train the configured model on the configured data; return (and save) its final metrics.

    With ``trainer.distributed.enabled`` every process of ``torchrun`` runs this: they train
    together, rank 0 evaluates and writes the run folder (rank 0's), and all return its metrics.
    With streamed input only rank 0 loads the data (``recsys.recommenders.sequential_stream``).
    """
    c = as_dict(cfg)
    distributed = sharding.DistributedConfig.of(c["trainer"].get("distributed"))
    main, streams = True, False
    if distributed.enabled:
        rank, _ = sharding.start(distributed)
        main = rank == 0
        # On every rank, before any data: a model without streamed input fails here.
        streams = _streams_from_rank_zero(c)
        c["run_dir"] = sharding.broadcast(c["run_dir"])  # one folder, though clocks differ
        if not main:
            logging.getLogger().setLevel(logging.WARNING)
    if main:
        metrics = _train(c)
    elif streams:
        metrics = _follow(c)
    else:
        metrics = _train(c, evaluate=False)
    if not distributed.enabled:
        return metrics
    metrics = sharding.broadcast(metrics)
    # The ranks leave the group together: a process exiting with its group open can be aborted
    # at interpreter shutdown by the backend's threads ("terminate called without an active
    # exception"), failing a run that has finished.
    sharding.barrier()
    sharding.stop()
    return metrics


def _streams_from_rank_zero(c: Mapping) -> bool:
    """Whether the ranks other than 0 train on streamed windows without loading the data."""
    if streamed_input(TrainerConfig(**c["trainer"])) is None:
        return False
    spec = model_spec(model_settings(c)["name"])
    if not issubclass(spec.recommender, SequentialRecommender):
        raise ValueError(
            f"trainer.distributed.input.mode=streamed: model {spec.name!r} has no streamed input "
            "(sequential models only); use trainer.distributed.input.mode=memory"
        )
    return True


def _follow(c: dict) -> dict[str, float]:
    """A rank other than 0 of a streamed run: rank 0's plan, its own part of the windows."""
    resume = bool(c.get("resume", False))
    follow_streamed(TrainerConfig(**c["trainer"]), run_dir=c["run_dir"], resume=resume)
    return {}


def _train(c: dict, *, evaluate: bool = True) -> dict[str, float]:
    run_dir = Path(c["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = bool(c.get("resume", False))
    if resume:
        _check_resume(c, run_dir)
    data_cfg = DataConfig(**c["data"])
    data = load_sequential_data(data_cfg)
    rec = build_recommender(c, data, run_dir=run_dir, resume=resume)
    split = data.train_split
    rec.fit(split.train, item_features=split.item_features)
    if not evaluate:
        return {}
    stages = tuple(c.get("eval_stages", ("valid", "test")))
    ks = tuple(c.get("eval_ks", (10, 20, 100)))
    metrics = final_metrics(rec, data, data_cfg.protocols, ks, stages) if stages else {}
    fit = rec.fit_result
    metrics.update(
        {
            "train/best_epoch": fit.best_epoch,
            "train/best_value": fit.best_value,
            "train/epochs": fit.epochs,
            "train/seconds": round(fit.seconds, 3),
            "train/train_seconds": round(fit.train_seconds, 3),
            "train/sequences_per_second": round(fit.sequences_per_second, 1),
        }
    )
    _log_run(c, rec, data, metrics, run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("metrics written to %s", run_dir / "metrics.json")
    return metrics


def _log_run(
    c: Mapping, rec: Recommender, data: SequentialData, metrics: Mapping, run_dir: Path
) -> None:
    """Hyperparameters with the headline metrics, and a projector sample of each head's table."""
    logger = RunLogger(run_dir)
    hparams = {f"{s}.{k}": v for s in ("model", "loss", "task") for k, v in c.get(s, {}).items()}
    hparams.update({f"trainer.{k}": c["trainer"][k] for k in ("lr", "batch_size", "seed")})
    hparams["data"] = c["data"]["name"]
    headline = {k: v for k, v in metrics.items() if k.startswith("test/") and k.endswith("@10")}
    logger.hparams(hparams, headline)
    for head, split in data.splits.items():
        labels = ["<pad>", "<unknown>", *map(str, split.item_vocab.ids)]
        weight = torch.from_numpy(rec.candidate_embeddings(head))
        logger.projector(weight, tag=head, labels=labels, seed=rec.trainer.seed)
    logger.close()
