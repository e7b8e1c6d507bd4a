"""`recsys-rank`: train the ranker and compare it offline on a synthetic world
(recsys/conf/rank.yaml; the steps and time windows are in ``recsys.ranking.experiment``), or
on a world without planted truth, e.g. a platform's ingested logs, on its logged outcomes
(``recsys.ranking.logged``: it says so, and lists are scored by replaying logged next actions).

Writes ``<run_dir>/ranker.pt`` (``recsys.ranking.ranker_io.load_ranker`` reads it; the
service loads it the same way) and ``<run_dir>/ranking.json`` (every ordering's CTR, CVR,
CTCVR and NDCG@10 with 95 % intervals, paired differences against the two-tower ordering,
the KOL ablation, ESMM AUCs and timings), and prints the comparison as a markdown table.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def settings_from(cfg: Mapping):
    from recsys.ranking.experiment import RankSettings

    r, q = cfg["ranker"], cfg["requests"]
    return RankSettings(
        train_requests=q["train"],
        valid_requests=q["valid"],
        test_requests=q["test"],
        eval_requests=int(q["eval"]),
        train_share=float(cfg["train_share"]),
        seed=int(cfg["seed"]),
        esmm_seeds=tuple(cfg["esmm_seeds"]),
        threads=int(cfg["threads"]),
        k=int(r["k"]),
        mode=str(r["mode"]),
        blend_yaml=r["blend"],
        esmm_yaml=r["esmm"],
    )


def load_world(cfg: Mapping):
    """The checkpoint's world and two-tower, or the named world without one."""
    from recsys.ranking.experiment import world_by_name, world_from_checkpoint

    if cfg["checkpoint"]:
        return world_from_checkpoint(
            cfg["checkpoint"], data_dir=cfg["data_dir"], cache_dir=cfg["cache_dir"]
        )
    w = cfg["world"]
    fracs = {"valid_frac": float(w["valid_frac"]), "test_frac": float(w["test_frac"])}
    return world_by_name(w["name"], seed=int(w["seed"]), cache_dir=cfg["cache_dir"],
                         path=w.get("path"), **fracs)  # fmt: skip


def run(cfg: DictConfig | Mapping) -> dict:
    """Run the job; returns the record written to ``ranking.json`` (as read back)."""
    import torch

    from recsys.ranking.experiment import run_experiment
    from recsys.ranking.logged import run_logged
    from recsys.ranking.ranker_io import save_ranker

    settings = settings_from(cfg)
    torch.set_num_threads(settings.threads)
    run_dir = Path(cfg["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    world = load_world(cfg)
    load_s = time.perf_counter() - began
    log.info("world %s (%s) loaded in %.1f s", world.name, world.checkpoint or "no two-tower",
             load_s)  # fmt: skip
    # Without planted truth the run says so and ranks on logged outcomes (ranking.logged).
    record, ranker = (run_experiment if world.truth is not None else run_logged)(world, settings)
    record["seconds"] = {"load": round(load_s, 2), **record["seconds"]}
    meta = {k: record[k] for k in ("world", "checkpoint", "windows", "model_features")}
    meta["test_lists"] = _saved_lists(record, ranker.mode)
    record["ranker"] = {"mode": ranker.mode, "path": str(save_ranker(ranker, run_dir, meta))}
    text = json.dumps(record, indent=2)
    (run_dir / "ranking.json").write_text(text + "\n")
    return json.loads(text)


def _saved_lists(record: dict, mode: str) -> dict:
    """The saved ranker's own row of the comparison (plain values, for its meta)."""
    from recsys.ranking.experiment import BLEND, LEARNED

    return record["lists"]["lists"][LEARNED if mode == "learned" else BLEND]


@hydra.main(version_base="1.3", config_path="../conf", config_name="rank")
def main(cfg: DictConfig) -> None:
    from recsys.ranking.logged import logged_markdown
    from recsys.ranking.offline_eval import lists_markdown

    record = run(cfg)
    logged = record["lists"].get("outcomes") == "logged"
    if logged:
        print(record["truth"] + "\n")
    print((logged_markdown if logged else lists_markdown)(record["lists"]))
    print(f"\nranker ({record['ranker']['mode']}) -> {record['ranker']['path']}")


if __name__ == "__main__":
    main()
