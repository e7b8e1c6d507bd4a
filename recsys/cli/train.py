"""`recsys-train`: train a model on a dataset (Hydra app; configs in recsys/conf/train.yaml)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Train, print the headline metrics; return the monitored validation value (for sweeps)."""
    from recsys.recommenders.experiment import train

    log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    metrics = train(cfg)
    for key, value in metrics.items():
        if key.startswith("test/") and key.endswith(("hr@10", "ndcg@10")):
            print(f"{key} = {value:.4f}")
    return float(metrics.get("train/best_value", 0.0))


if __name__ == "__main__":
    main()
