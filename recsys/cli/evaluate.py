"""`recsys-evaluate`: evaluate a saved model under any protocol (recsys/conf/evaluate.yaml).

The checkpoint carries the run's configuration and vocabularies, so the data is rebuilt exactly
as in training (and checked against the saved vocabularies) and the model is rebuilt from it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, float]:
    """Metrics keyed ``<stage>/<head>/<protocol>/<metric>`` for the requested protocols."""
    import torch

    from recsys.evaluation import evaluate
    from recsys.training.checkpoint import load_checkpoint
    from recsys.training.data import DataConfig, for_protocol, load_sequential_data
    from recsys.training.experiment import build_recommender

    ckpt = load_checkpoint(cfg.checkpoint)
    saved = ckpt["config"]
    data_section = dict(saved["data"])
    for key in ("data_dir", "cache_dir"):
        if cfg.get(key) is not None:
            data_section[key] = cfg[key]
    data_cfg = DataConfig(**data_section)
    data = load_sequential_data(data_cfg)
    data.check_vocabularies(ckpt["vocabularies"], f"checkpoint {cfg.checkpoint}")
    trainer = {**saved["trainer"], "device": cfg.device}
    rec = build_recommender({**saved, "trainer": trainer}, data, validate=False)
    split = data.train_split
    model = rec.build(split.train, item_features=split.item_features)
    model.load_state_dict(ckpt["model"])
    model.to(torch.device(cfg.device)).eval()
    protocols = [cfg.protocol] if cfg.protocol else list(data_cfg.protocols)
    out: dict[str, float] = {}
    for head, head_split in data.splits.items():
        for protocol in protocols:
            res = evaluate(
                rec.for_head(head),
                for_protocol(head_split, protocol),
                protocol=protocol,
                stage=cfg.stage,
                ks=tuple(cfg.ks),
                n_negatives=int(cfg.n_negatives),
                max_users=cfg.max_users,
                seed=int(cfg.seed),
            )
            log.info("%s: %s", head, res.summary())
            out.update(
                {f"{cfg.stage}/{head}/{res.protocol}/{k}": v for k, v in res.metrics.items()}
            )
    if cfg.out_file:
        Path(cfg.out_file).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out_file).write_text(json.dumps(out, indent=2) + "\n")
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    for key, value in run(cfg).items():
        print(f"{key} = {value:.6g}" if isinstance(value, float) else f"{key} = {value}")


if __name__ == "__main__":
    main()
