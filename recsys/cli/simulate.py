"""`recsys-simulate`: write a synthetic live-commerce world (tables, truth, manifest)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Simulate the configured world into ``cfg.out_dir``; return its manifest."""
    from recsys.data.validation import validate_dir
    from recsys.simulation import SimConfig, simulate

    overrides = OmegaConf.to_container(cfg.overrides, resolve=True) if "overrides" in cfg else {}
    sim_cfg = SimConfig.from_preset(cfg.preset, seed=int(cfg.seed), **overrides)
    out_dir = Path(cfg.out_dir)
    manifest = simulate(
        sim_cfg, out_dir, progress=bool(cfg.progress), overwrite=bool(cfg.overwrite)
    )
    log.info("wrote %s events to %s", manifest["counts"].get("events"), out_dir)
    if cfg.validate != "off":
        quarantine = out_dir / "quarantine" if cfg.validate == "lenient" else None
        report = validate_dir(out_dir, mode=cfg.validate, quarantine_dir=quarantine)
        log.info("validation (%s): %s", cfg.validate, report.summary())
    return manifest


@hydra.main(version_base="1.3", config_path="../conf", config_name="simulate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
