"""`recsys-evaluate`: evaluate a saved model under any protocol (recsys/conf/evaluate.yaml).

The checkpoint carries the run's configuration and vocabularies (``recsys.recommenders.restore``).
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
    from recsys.data.splits import for_protocol
    from recsys.evaluation import evaluate
    from recsys.recommenders.restore import restore_from_config

    restored = restore_from_config(cfg)
    rec, data, data_cfg = restored.recommender, restored.data, restored.data_config
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
