"""`recsys-experiment`: policy A against policy B in the market, with the report a team needs.

Viewers (or live rooms, ``experiment.unit=room``) are hashed into the arms by
``recsys.experiments.Experiment.assign``; ``SplitPolicy`` routes every request, coupon and
message to the policy of its unit's arm and logs exposures; the market runs ``days`` days from
``start_day`` (a pipeline arm's test-cut day, so no arm acts on days its model trained on);
then ``ab_report`` reads the logs like any other logs in the project's schema and writes
``report.md``, ``report.json`` and ``sequential.png`` into the run folder.

Coupon arms (``arm@control=coupons_rule arm@treatment=coupons_learned coupons_run=RUN``) grant
from a ``recsys-coupons`` run beside one slate policy; the true effect of their grants comes
from the planted coupon response (``recsys.coupons.ab``: every arm decides for every viewer each
day), beside the estimates from the logs, in ``coupons_ab.json`` and at the end of
``report.md``. They start after the days the coupon study used. The pre-period is the
world's own ``pre_days`` days before the start: the units' behaviour there is the CUPED
covariate, and the popularity arm is warmed on it.
"""

from __future__ import annotations

import functools
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
    if kind == "coupons":
        from recsys.coupons.policy import coupon_arm
        from recsys.coupons.study import slate_policy

        saved = coupon_run(cfg)
        slates = slate_policy(market, str(arm.slates or saved["slates"]), int(cfg.world.seed))
        return coupon_arm(saved, str(arm.chooser), slates,
                          market.world.config.chunk_window, history,
                          budget_per_viewer=arm.budget_per_viewer)  # fmt: skip
    raise ValueError(f"arm policy {kind!r}: one of random, popularity, oracle, pipeline, "
                     f"coupons")  # fmt: skip


def coupon_run(cfg: DictConfig) -> dict:
    """The contents of ``coupons_run``'s ``coupon_model.pkl``."""
    if cfg.coupons_run is None:
        raise ValueError("coupon arms: set coupons_run=<a recsys-coupons run folder>")
    path = Path(cfg.coupons_run) / "coupon_model.pkl"
    if not path.is_file():
        raise FileNotFoundError(f"coupon arms: {path} not found (run recsys-coupons first)")
    return _unpickled(str(path.resolve()), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _unpickled(path: str, mtime_ns: int) -> dict:
    """One read per file version: a run asks for the coupon model at each step that needs it."""
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f)


def _coupon_world(cfg: DictConfig) -> dict:
    """The coupon run's catalogue and world length; its world must be this experiment's."""
    saved = coupon_run(cfg)
    world = saved.get("world", {})
    ours = {"preset": str(cfg.world.preset), "seed": int(cfg.world.seed)}
    if {k: world.get(k) for k in ours} != ours:
        raise ValueError(f"coupon arms: {cfg.coupons_run} was trained on world "
                         f"{ {k: world.get(k) for k in ours} }, the experiment runs {ours}")
    return {"catalogue": saved["model"].catalogue, "n_days": world.get("n_days")}


def coupon_arms(cfg: DictConfig) -> bool:
    """Whether the arms grant coupons (both, or neither: mixed arms are refused)."""
    kinds = [cfg[a].policy == "coupons" for a in ARMS]
    if any(kinds) and not all(kinds):
        raise ValueError("coupon arms: both arms must be coupon arms (their true effect is the "
                         "coupons' on the same slates)")  # fmt: skip
    return all(kinds)


def start_day_of(cfg: DictConfig) -> int:
    """The configured start, else a pipeline arm's test-cut day, else 1."""
    from recsys.recommenders.restore import restore
    from recsys.simulation.config import SimConfig

    if cfg.start_day is not None:
        return int(cfg.start_day)
    if coupon_arms(cfg):
        return int(coupon_run(cfg)["study_days"])
    pipelines = [cfg[a] for a in ARMS if cfg[a].policy == "pipeline"]
    if not pipelines:
        return 1
    test_ts = restore(pipelines[0].checkpoint, cache_dir=cfg.world.cache_dir).data.train_split.meta[
        "test_ts"]  # fmt: skip
    sim = SimConfig.from_preset(cfg.world.preset, seed=int(cfg.world.seed))
    return max(1, (int(test_ts) - sim.chunk_window(0)[0]) // 86_400)


def pre_period(cfg: DictConfig, start_day: int) -> list:
    """The events of the ``pre_days`` days before ``start_day``, oldest first: the world's own,
    or for coupon arms the coupon study's market logs (the days it ran, in its world)."""
    from recsys.data.schema import TABLES
    from recsys.data.tables import read_table
    from recsys.datasets import ensure_world

    if coupon_arms(cfg):
        folder = Path(cfg.coupons_run) / "market" / "events"
    else:
        folder = ensure_world(cfg.world.preset, int(cfg.world.seed), cfg.world.cache_dir) / "events"
    days = range(max(0, start_day - int(cfg.pre_days)), start_day)
    missing = [d for d in days if not (folder / f"part-{d:05d}.parquet").is_file()]
    if missing:
        raise FileNotFoundError(f"pre-period: {folder} has no day {missing[0]} (pre_days="
                                f"{cfg.pre_days} before day {start_day})")  # fmt: skip
    return [read_table(folder / f"part-{d:05d}.parquet", TABLES["events"]) for d in days]


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

    from recsys.coupons.ab import ab_in_market
    from recsys.experiments.arms import run_experiment
    from recsys.experiments.report import ab_report, markdown, write_report
    from recsys.market import Market, MarketConfig

    experiment, out, started = experiment_of(cfg), Path(cfg.out_dir), time.perf_counter()
    start, coupons = start_day_of(cfg), coupon_arms(cfg)
    world = _coupon_world(cfg) if coupons else {}
    config = MarketConfig(preset=cfg.world.preset, seed=int(cfg.world.seed), start_day=start,
                          draw_seed=cfg.draw_seed, open_rate=float(cfg.open_rate),
                          slate_size=int(cfg.slate_size), **world)  # fmt: skip
    market = Market(config, out / "market")
    if start >= market.n_days:
        raise ValueError(f"start day {start}: the {cfg.world.preset} world has {market.n_days}")
    history = pre_period(cfg, start)
    start_ts = market.world.config.chunk_window(start)[0]
    arms = {a: build_policy(cfg[a], cfg, market, start_ts, history) for a in ARMS}
    log.info("experiment %s: %s vs %s by %s from day %d for %d days", experiment.name,
             cfg.control.policy, cfg.treatment.policy, experiment.unit, start, int(cfg.days))
    if coupons:
        coupon_ab = ab_in_market(market, arms, int(cfg.days), experiment)
    else:
        run_experiment(market, experiment, arms, days=int(cfg.days),
                       counterfactual=bool(cfg.counterfactual), progress=True)  # fmt: skip
    pre = pd.concat(history, ignore_index=True) if history else None
    report = ab_report(market.out, experiment, pre_events=pre, alpha=float(cfg.alpha),
                       tuning=float(cfg.sequential_tuning))  # fmt: skip
    paths = write_report(report, out)
    if coupons:
        _add_coupon_truth(coupon_ab, paths, out)
    (out / "command.txt").write_text(command_line() + "\n")
    (out / "seconds.txt").write_text(f"{time.perf_counter() - started:.1f}\n")
    print(markdown(report), flush=True)
    return {"report": report, "paths": paths, "start_day": start,
            "config": OmegaConf.to_container(cfg, resolve=False)}  # fmt: skip


def _add_coupon_truth(coupon_ab: dict, paths: dict, out: Path) -> None:
    """The coupon arms' estimates beside their true effects: ``coupons_ab.json`` and a section
    at the end of ``report.md``."""
    import json

    from recsys.coupons.report import ab_lines

    (out / "coupons_ab.json").write_text(json.dumps(coupon_ab, indent=2) + "\n")
    lines = ab_lines(coupon_ab, "The coupons' true effect beside the estimates")
    with open(paths["markdown"], "a") as f:
        f.write("\n".join(lines) + "\n")
    paths["coupons"] = out / "coupons_ab.json"


@hydra.main(version_base="1.3", config_path="../conf", config_name="experiment")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
