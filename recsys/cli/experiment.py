"""`recsys-experiment`: policy A against policy B in the market, with the report a team needs.

Viewers (or live rooms, ``experiment.unit=room``) are hashed into the arms by
``recsys.experiments.Experiment.assign``; ``SplitPolicy`` routes every request, coupon and
message to the policy of its unit's arm and logs exposures; the market runs ``days`` days from
``start_day`` (a pipeline arm's test-cut day, so no arm acts on days its model trained on);
then ``ab_report`` reads the logs like any other logs in the project's schema and writes
``report.md``, ``report.json`` and ``sequential.png`` into the run folder. The pre-period is the
world's own ``pre_days`` days before the start: the units' behaviour there is the CUPED
covariate, and the popularity arm is warmed on it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
ARMS = ("control", "treatment")


def experiment_of(cfg: DictConfig):
    """The configured ``Experiment`` (weights not summing to 1 are refused there)."""
    from recsys.experiments import Experiment

    e = cfg.experiment
    weights = {str(k): float(v) for k, v in e.weights.items()}
    if sorted(weights) != sorted(ARMS):
        raise ValueError(f"experiment.weights: one weight per arm {list(ARMS)}, got {weights}")
    return Experiment(str(e.name), {a: weights[a] for a in ARMS}, salt=e.salt or "",
                      unit=str(e.unit), traffic=float(e.traffic))  # fmt: skip


def _pipeline(arm: DictConfig, cfg: DictConfig, start_ts: int):
    """A trained pipeline arm: the ranker, or the two-tower's own ordering."""
    from recsys.market.pipeline import PipelinePolicy
    from recsys.ranking import BlendWeights, Ranker

    if arm.ordering not in ("ranker", "two_tower"):
        raise ValueError(f"pipeline arm: ordering must be ranker or two_tower, got {arm.ordering}")
    ranker = arm.ranker if arm.ordering == "ranker" else None
    policy = PipelinePolicy.load(arm.checkpoint, start_ts=start_ts, ranker=ranker,
                                 cache_dir=cfg.world.cache_dir, chunk=int(arm.chunk))  # fmt: skip
    if arm.ordering == "two_tower":
        own = Ranker.blended(BlendWeights((("retrieval_score", 1.0),)))
        policy.service.ranker = policy.service.outside_session = own
        policy.name = "two_tower"
    return policy


def build_policy(arm: DictConfig, cfg: DictConfig, market, start_ts: int, history: list):
    """One arm's policy from its config (``conf/arm/``)."""
    from recsys.market import OraclePolicy, PopularityPolicy, RandomPolicy

    kind = arm.policy
    if kind == "random":
        return RandomPolicy(seed=int(arm.seed))
    if kind == "popularity":
        return PopularityPolicy(daily_decay=float(arm.daily_decay)).warm(history)
    if kind == "oracle":
        return OraclePolicy(market.truth, market.config.response)
    if kind == "pipeline":
        return _pipeline(arm, cfg, start_ts)
    raise ValueError(f"arm policy {kind!r}: one of random, popularity, oracle, pipeline")


def start_day_of(cfg: DictConfig) -> int:
    """The configured start, else a pipeline arm's test-cut day, else 1."""
    from recsys.recommenders.restore import restore
    from recsys.simulation.config import SimConfig

    if cfg.start_day is not None:
        return int(cfg.start_day)
    pipelines = [cfg[a] for a in ARMS if cfg[a].policy == "pipeline"]
    if not pipelines:
        return 1
    test_ts = restore(pipelines[0].checkpoint, cache_dir=cfg.world.cache_dir).data.train_split.meta[
        "test_ts"]  # fmt: skip
    sim = SimConfig.from_preset(cfg.world.preset, seed=int(cfg.world.seed))
    return max(1, (int(test_ts) - sim.chunk_window(0)[0]) // 86_400)


def pre_period(cfg: DictConfig, start_day: int) -> list:
    """The world's own events of the ``pre_days`` days before ``start_day``, oldest first."""
    from recsys.data.schema import TABLES
    from recsys.data.tables import read_table
    from recsys.datasets import ensure_world

    world = ensure_world(cfg.world.preset, int(cfg.world.seed), cfg.world.cache_dir)
    days = range(max(0, start_day - int(cfg.pre_days)), start_day)
    return [read_table(world / "events" / f"part-{d:05d}.parquet", TABLES["events"]) for d in days]


def command_line() -> str:
    """The command of this run as typed (``command.txt`` beside the report)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "recsys-experiment (configuration composed in code)"
    return " ".join(["recsys-experiment", *HydraConfig.get().overrides.task])


def run(cfg: DictConfig) -> dict:
    """Run the experiment and write its report; returns the report's record."""
    import time

    import pandas as pd

    from recsys.experiments.arms import run_experiment
    from recsys.experiments.report import ab_report, markdown, write_report
    from recsys.market import Market, MarketConfig

    experiment, out, started = experiment_of(cfg), Path(cfg.out_dir), time.perf_counter()
    start = start_day_of(cfg)
    config = MarketConfig(preset=cfg.world.preset, seed=int(cfg.world.seed), start_day=start,
                          draw_seed=cfg.draw_seed, open_rate=float(cfg.open_rate),
                          slate_size=int(cfg.slate_size))  # fmt: skip
    market = Market(config, out / "market")
    if start >= market.n_days:
        raise ValueError(f"start day {start}: the {cfg.world.preset} world has {market.n_days}")
    history = pre_period(cfg, start)
    start_ts = market.world.config.chunk_window(start)[0]
    arms = {a: build_policy(cfg[a], cfg, market, start_ts, history) for a in ARMS}
    log.info("experiment %s: %s vs %s by %s from day %d for %d days", experiment.name,
             cfg.control.policy, cfg.treatment.policy, experiment.unit, start, int(cfg.days))
    run_experiment(market, experiment, arms, days=int(cfg.days),
                   counterfactual=bool(cfg.counterfactual), progress=True)  # fmt: skip
    pre = pd.concat(history, ignore_index=True) if history else None
    report = ab_report(market.out, experiment, pre_events=pre, alpha=float(cfg.alpha),
                       tuning=float(cfg.sequential_tuning))  # fmt: skip
    paths = write_report(report, out)
    (out / "command.txt").write_text(command_line() + "\n")
    (out / "seconds.txt").write_text(f"{time.perf_counter() - started:.1f}\n")
    print(markdown(report), flush=True)
    return {"report": report, "paths": paths, "start_day": start,
            "config": OmegaConf.to_container(cfg, resolve=False)}  # fmt: skip


@hydra.main(version_base="1.3", config_path="../conf", config_name="experiment")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
