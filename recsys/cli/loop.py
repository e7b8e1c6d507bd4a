"""`recsys-loop`: the closed loop. Simulate days under the current policy in the market, retrain
its two-tower on everything logged so far, redeploy; beside it, on the same viewers, a frozen
copy of the round-0 policy, random and the oracle. One table per round, a plot, TensorBoard.

The round-0 model trains on the world's days before the validation cut of its own split; the
market starts on the day of that cut (``MarketConfig.start_day``), so no policy acts on days its
model trained on. Each retraining reads a world folder of those first days and the learning
market's logs (``recsys.market.rounds.training_folder``) and keeps its latest target events for
validation and test (``retrain_valid_frac`` each). At each redeployment both pipelines' request
features and session state read their own market's logs so far; the frozen one keeps its
round-0 weights, so the gap between them is what retraining brings.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig

from recsys.cli.pipeline import compose_job

log = logging.getLogger(__name__)
ARMS = ("learning", "frozen", "random", "oracle")


def train_two_tower(cfg: DictConfig, run_dir: Path, data: list[str]) -> Path:
    from recsys.recommenders.experiment import train
    from recsys.training.checkpoint import BEST

    train(compose_job("train", [*data, f"run_dir={run_dir}", *cfg.two_tower]))
    return run_dir / BEST


def deploy(cfg: DictConfig, checkpoint: Path, start_ts: int, history: Path | None = None):
    """Index the checkpoint (once) and serve it from ``start_ts`` as a market policy, its
    request features reading ``history`` (a world folder; default: its training data)."""
    from recsys.cli.index import build_indexes
    from recsys.market.pipeline import PipelinePolicy

    cache = cfg.world.cache_dir
    overrides = [f"checkpoint={checkpoint}", f"cache_dir={cache}" if cache else "cache_dir=null"]
    if not (checkpoint.parent / "index" / "product").is_dir():
        build_indexes(compose_job("index", [*overrides, *cfg.index]))
    return PipelinePolicy.load(checkpoint, start_ts=start_ts, cache_dir=cache, data_path=history)


def _world_data(cfg: DictConfig) -> list[str]:
    w = cfg.world
    return [f"data=synthetic-{w.preset}", f"data.world_seed={w.seed}",
            f"data.cache_dir={w.cache_dir}" if w.cache_dir else "data.cache_dir=null"]  # fmt: skip


def _own_world(cfg: DictConfig, world_dir: Path) -> list[str]:
    """A world with newcomers is not the preset's: the first training reads its folder."""
    return [f"data.path={world_dir}"] if _newcomers(cfg) else []


def _first_split(cfg: DictConfig) -> list[str]:
    s = cfg.first_split
    return [f"data.valid_frac={s.valid_frac}", f"data.test_frac={s.test_frac}"]


def _newcomers(cfg: DictConfig) -> dict:
    """``SimConfig`` overrides of the world's newcomers (none when both shares are 0)."""
    n = cfg.get("newcomers") or {}
    shares = {"new_user_share": float(n.get("users", 0.0)),
              "new_streamer_share": float(n.get("streamers", 0.0))}  # fmt: skip
    return {k: v for k, v in shares.items() if v}


def _markets(cfg: DictConfig, out: Path, start_day: int) -> dict:
    from recsys.market import Market, MarketConfig

    config = MarketConfig(preset=cfg.world.preset, seed=int(cfg.world.seed), drift=cfg.drift,
                          open_rate=cfg.open_rate, slate_size=cfg.slate_size,
                          start_day=start_day, **_newcomers(cfg))  # fmt: skip
    return {arm: Market(config, out / "markets" / arm) for arm in ARMS}


def run(cfg: DictConfig) -> dict:
    """Every round in order; returns (and writes) the per-round table."""
    from recsys.datasets import ensure_world
    from recsys.market import OraclePolicy, RandomPolicy
    from recsys.market.rounds import paired_gain, plot_rounds, round_row, training_folder
    from recsys.recommenders.restore import restore
    from recsys.training.logger import RunLogger

    out = Path(cfg.out_dir)
    world_dir = ensure_world(cfg.world.preset, int(cfg.world.seed), cfg.world.cache_dir,
                             _newcomers(cfg))  # fmt: skip
    ckpt0 = train_two_tower(
        cfg,
        out / "round_0" / "two_tower",
        _world_data(cfg) + _own_world(cfg, world_dir) + _first_split(cfg),
    )
    cut = restore(ckpt0, cache_dir=cfg.world.cache_dir).data.train_split.meta["valid_ts"]
    probe = _markets(cfg, out, 0)["random"].world.config
    start_day = (cut - probe.chunk_window(0)[0]) // 86_400
    markets = _markets(cfg, out, start_day)
    start_ts = probe.chunk_window(start_day)[0]
    policies = {"learning": deploy(cfg, ckpt0, start_ts), "frozen": deploy(cfg, ckpt0, start_ts),
                "random": RandomPolicy(seed=int(cfg.world.seed)),
                "oracle": OraclePolicy(markets["oracle"].truth)}  # fmt: skip
    rows, logger = [], RunLogger(out)
    for r in range(int(cfg.rounds)):
        first = start_day + r * int(cfg.days)
        days = range(first, min(first + int(cfg.days), probe.n_days))
        if len(days) == 0:
            log.warning("the world has no days left for round %d", r)
            break
        for arm, market in markets.items():
            market.run(policies[arm], days=len(days))
        gain = paired_gain(markets["learning"].out, markets["frozen"].out, days)
        for arm, market in markets.items():
            rows.append({"round": r, "arm": arm, "days": f"{days[0]}-{days[-1]}",
                         **round_row(market.out, days)})  # fmt: skip
        rows[-len(ARMS)]["gain_vs_frozen"] = gain
        _report(rows, r, logger)
        if r + 1 < int(cfg.rounds) and days[-1] + 1 < probe.n_days:
            next_ts, here = probe.chunk_window(days[-1] + 1)[0], out / f"round_{r + 1}"
            logged = {
                arm: training_folder(world_dir, markets[arm].out, start_day, here / f"{arm}_data")
                for arm in ("learning", "frozen")
            }
            ckpt = retrain(cfg, out, r + 1, logged["learning"])
            policies["learning"] = deploy(cfg, ckpt, next_ts, logged["learning"])
            # The frozen copy keeps its weights but its features read its own logs up to now,
            # as the learning copy's do: the difference between the two arms is the retraining.
            policies["frozen"] = deploy(cfg, ckpt0, next_ts, logged["frozen"])
    logger.close()
    table = pd.DataFrame(rows)
    return _write(out, table, plot_rounds(table, out / "loop.png"))


def retrain(cfg, out: Path, r: int, folder: Path) -> Path:
    """The checkpoint of round ``r``'s learning policy: its two-tower retrained on ``folder``
    (the world's first days and every day the learning market logged)."""
    frac = cfg.retrain_valid_frac
    data = [*_world_data(cfg), f"data.path={folder}", f"data.valid_frac={frac}",
            f"data.test_frac={frac}"]  # fmt: skip
    return train_two_tower(cfg, out / f"round_{r}" / "two_tower", data)


def _report(rows: list[dict], r: int, logger) -> None:
    this = [row for row in rows if row["round"] == r]
    lines = [f"round {r} (days {this[0]['days']}):"]
    for row in this:
        lines.append(
            f"  {row['arm']:<9} true GMV/viewer-day {row['true_gmv_per_viewer']:8.3f} "
            f"(se {row['true_gmv_se']:.3f})  CTR {row['ctr']:.4f}  CVR {row['cvr']:.4f}"
        )
        logger.scalars(
            {
                f"{row['arm']}/true_gmv_per_viewer": row["true_gmv_per_viewer"],
                f"{row['arm']}/ctr": row["ctr"],
                f"{row['arm']}/cvr": row["cvr"],
            },
            r,
        )
    g = this[0]["gain_vs_frozen"]
    lines.append(f"  learning - frozen: {g['gain']:+.3f} [{g['lo']:+.3f}, {g['hi']:+.3f}]")
    print("\n".join(lines), flush=True)  # fmt: skip


def _write(out: Path, table: pd.DataFrame, png: Path) -> dict:
    flat = table.drop(columns=["gain_vs_frozen"], errors="ignore")
    gains = {int(r["round"]): r["gain_vs_frozen"] for r in table.to_dict("records")
             if isinstance(r.get("gain_vs_frozen"), dict)}  # fmt: skip
    result = {"rounds": flat.to_dict("records"), "gain_vs_frozen": gains, "plot": str(png)}
    (out / "loop.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "loop.md").write_text(markdown(result))
    return result


def markdown(result: dict) -> str:
    """The loop's table: per round and arm, true GMV per viewer-day, CTR and CVR with 95%
    intervals, and the learning arm's paired gain over the frozen one."""
    from recsys.market.compare import interval_cell

    head = ["round", "days", "arm", "true GMV / viewer-day", "CTR %", "CVR %",
            "learning - frozen"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rounds"]:
        g = result["gain_vs_frozen"].get(row["round"], result["gain_vs_frozen"].get(
            str(row["round"])))  # fmt: skip
        gain = f"{g['gain']:+.3f} [{g['lo']:+.3f}, {g['hi']:+.3f}]" if row["arm"] == "learning" \
            and g else ""  # fmt: skip
        cells = [str(row["round"]), row["days"], row["arm"],
                 interval_cell(row, "true_gmv", value="true_gmv_per_viewer", digits=2),
                 interval_cell(row, "ctr", scale=100, digits=2),
                 interval_cell(row, "cvr", scale=100, digits=2), gain]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@hydra.main(version_base="1.3", config_path="../conf", config_name="loop")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
