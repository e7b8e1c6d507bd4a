"""`recsys-pipeline`: the main job on the embedded synthetic world, one table at the end."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from recsys.benchmarking.candidates import build_candidates, quick_grids
from recsys.benchmarking.quality import QualitySettings, run_quality
from recsys.benchmarking.splits import make_split, new_item_targets

log = logging.getLogger(__name__)

COLUMNS = ("hr@10", "ndcg@10", "ndcg@100", "mrr")


def run(cfg: DictConfig) -> dict:
    """Evaluate every configured model per target and protocol; return the metrics."""
    world = cfg.world
    dataset = f"synthetic-{world.preset}"
    results: dict[str, dict] = {}
    for target in cfg.targets:
        live_split, _ = make_split(
            dataset, target=target, seed=int(world.seed), cache_dir=world.cache_dir
        )
        for protocol in cfg.protocols:
            split = live_split if protocol == "live" else new_item_targets(live_split)
            candidates = build_candidates(
                split, list(cfg.models), grids=quick_grids() if cfg.quick else None
            )
            settings = QualitySettings(
                protocol=protocol, metric=cfg.metric, max_valid_users=cfg.max_valid_users
            )
            for res in run_quality(split, candidates, settings):
                results[f"{target}/{protocol}/{res.name}"] = res.to_json()
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    log.info("results written to %s", out_dir / "results.json")
    return results


def table(results: dict[str, dict]) -> str:
    head = ["target", "protocol", "model", *COLUMNS, "vs best p", "hparams"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, res in results.items():
        cells = key.split("/")
        cells += [f"{res['test'].get(c, float('nan')):.4f}" for c in COLUMNS]
        sig = res["vs_best"]
        cells.append("best" if not sig else f"{sig['p_value']:.2g}")
        cells.append(", ".join(f"{k}={v}" for k, v in res["hparams"].items()) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="pipeline")
def main(cfg: DictConfig) -> None:
    log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    run(cfg)


if __name__ == "__main__":
    main()
