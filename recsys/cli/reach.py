"""`recsys-reach`: timely reach in the market: triggers, decisions, copy, and the report.

The market explores with randomised sends, then no-send, blast, the rule and the learned policy
(and the learned policy's send-time experiment) each run the same days on a copy of it
(``recsys.reach.study``); the run folder gets ``reach.json``, ``reach.md``, the learned
policy's ``messages.parquet`` (every trigger with its decision, reason and copy) and each arm's
market logs under ``arms/``.
"""

from __future__ import annotations

import logging
import sys
import time

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def configs_of(cfg: DictConfig):
    """(StudyConfig, DecisionConfig, CopyTemplates) of a composed config."""
    from recsys.reach.copy import CopyTemplates
    from recsys.reach.decide import DecisionConfig
    from recsys.reach.features import Clock
    from recsys.reach.study import StudyConfig

    plain = OmegaConf.to_container(cfg, resolve=False)
    study = StudyConfig(
        preset=str(cfg.world.preset), seed=int(cfg.world.seed), explore_days=int(cfg.explore_days),
        days=None if cfg.days is None else int(cfg.days), explore_share=float(cfg.explore_share),
        explore_lead_s=int(cfg.explore_lead_s), time_share=float(cfg.time_share),
        open_rate=float(cfg.open_rate), alpha=float(cfg.alpha),
        arms=tuple(str(a) for a in cfg.arms), clock=Clock(**plain["clock"]),
    )  # fmt: skip
    decision = DecisionConfig(**plain["decision"])
    c = plain["copy"]
    templates = CopyTemplates(
        templates={str(k): tuple(v) for k, v in c["templates"].items()},
        fallback={str(k): str(v) for k, v in c["fallback"].items()},
        max_chars=int(c["max_chars"]), salt=str(c["salt"]),
    )  # fmt: skip
    return study, decision, templates


def run(cfg: DictConfig) -> dict:
    """``mode=study``: run the study into ``cfg.out_dir``; ``mode=replay``: replay a logged
    day; returns the report's record."""
    if cfg.mode == "replay":
        return replay(cfg)
    if cfg.mode != "study":
        raise ValueError(f"reach.yaml mode: 'study' or 'replay', got {cfg.mode!r}")
    from recsys.reach.report import study_record, write
    from recsys.reach.study import run_study

    started = time.perf_counter()
    study, decision, templates = configs_of(cfg)
    log.info("reach: %s world, %d explored days, arms %s", study.preset, study.explore_days,
             ", ".join(study.arms))  # fmt: skip
    runs = run_study(study, decision, templates, cfg.out_dir, progress=True)
    record, table = study_record(runs, study)
    record["seconds"] = round(time.perf_counter() - started, 1)
    command = "recsys-reach " + " ".join(sys.argv[1:])
    learned = runs.get("learned")
    paths = write(record, table, cfg.out_dir, command.strip(),
                  model=learned.policy.model if learned is not None else None)
    for name, check in record.get("checks", {}).items():
        if name != "kept_intervals":
            log.info("reach: %s %s", name, "holds" if check["holds"] else "does NOT hold")
    log.info("reach: report in %s", paths["md"])
    return record


def replay(cfg: DictConfig) -> dict:
    """One logged day streamed through the engine and the decisions (``replay.*``)."""
    import json
    import pickle
    from pathlib import Path

    from recsys.reach.replay import replay_day

    r = cfg.replay
    if r.folder is None or r.day is None or r.model is None:
        raise ValueError("reach.yaml replay: folder, day and model (a study's reach_model.pkl) "
                         "are needed for mode=replay")  # fmt: skip
    study, decision, templates = configs_of(cfg)
    with open(r.model, "rb") as f:
        model = pickle.load(f)
    table, stats = replay_day(r.folder, int(r.day), model, decision, templates, study.clock,
                              int(r.micro))  # fmt: skip
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "messages.parquet", index=False)
    (out / "replay.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    log.info("reach replay: day %s, %d events, %s sent, delay p99 %.1f ms; in %s", r.day,
             stats["events"], stats["decisions"].get("sent", 0), stats["delay_ms"]["p99"], out)
    return stats


@hydra.main(version_base="1.3", config_path="../conf", config_name="reach")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
