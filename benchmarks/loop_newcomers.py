"""A recsys-loop run with newcomers, its gain over the frozen model split by viewer: those who
signed up during the market days, and those who were there before.

    recsys-loop world.preset=small rounds=3 days=3 newcomers.users=0.1 newcomers.streamers=0.1
    python benchmarks/loop_newcomers.py RUN_DIR [--out benchmarks/results/loop_newcomers]

Reads the run's own config (``RUN_DIR/.hydra/config.yaml``), rebuilds its world's newcomers
(``SimConfig.new_user_share`` / ``new_streamer_share``: the same seed, the same first days),
and for each round compares the learning and frozen markets' true GMV per viewer-day on the
same viewers (paired, 95% interval over viewers). Copies the run's table and plot beside it.
Writes ``<out>.json``, ``<out>.md`` and ``<out>.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from recsys.market.kpis import mean_interval
from recsys.market.rounds import true_gmv_by_viewer
from recsys.simulation import SimConfig
from recsys.simulation.runner import WORLD, _rng
from recsys.simulation.world import build_world

RESULTS = Path(__file__).resolve().parent / "results"


def split_gains(run: Path) -> tuple[dict, pd.DataFrame]:
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    shares = {"new_user_share": float(cfg.newcomers.users),
              "new_streamer_share": float(cfg.newcomers.streamers)}  # fmt: skip
    sim = SimConfig.from_preset(cfg.world.preset, seed=int(cfg.world.seed), **shares)
    world = build_world(sim, _rng(sim, WORLD))
    joined = pd.Series(world.arrivals.user_day, index=world.users.pseudonym)
    table = pd.DataFrame(json.loads((run / "loop.json").read_text())["rounds"])
    first_market_day = int(str(table["days"].iloc[0]).split("-")[0])
    rows = []
    for r, label in table.groupby("round")["days"].first().items():
        lo, hi = (int(x) for x in str(label).split("-"))
        days = range(lo, hi + 1)
        learning, frozen = (true_gmv_by_viewer(run / "markets" / a, days) / len(days)
                            for a in ("learning", "frozen"))  # fmt: skip
        frozen = frozen.reindex(learning.index)
        new = joined.reindex(learning.index).to_numpy() >= first_market_day
        for name, mask in (("signed up during the market", new), ("there before", ~new)):
            gain = (learning - frozen).to_numpy()[mask]
            mean, low, high = mean_interval(gain, int(mask.sum()))
            rows.append({"round": int(r), "days": label, "viewers": name, "n": int(mask.sum()),
                         "learning": float(learning[mask].mean()),
                         "frozen": float(frozen[mask].mean()), "gain": mean, "lo": low,
                         "hi": high})  # fmt: skip
    setup = {**shares, "preset": sim.preset, "seed": sim.seed, "first_market_day": first_market_day,
             "newcomer_users": int((world.arrivals.user_day > 0).sum()),
             "newcomer_streamers": int((world.arrivals.streamer_day > 0).sum())}  # fmt: skip
    return setup, pd.DataFrame(rows)


def markdown(setup: dict, rows: pd.DataFrame, loop_md: str) -> str:
    lines = [
        "# The closed loop with newcomers",
        "",
        f"`recsys-loop world.preset={setup['preset']} rounds=3 days=3 "
        f"newcomers.users={setup['new_user_share']} newcomers.streamers="
        f"{setup['new_streamer_share']}`, then `python benchmarks/loop_newcomers.py RUN_DIR`.",
        "",
        f"The world: {setup['newcomer_users']} viewers sign up and {setup['newcomer_streamers']} "
        "streamers go live for the first time (with their catalogues) on a day after day 0; the "
        f"market starts on day {setup['first_market_day']}, after the first model's training "
        "window, and drifts interests as in `loop.md`.",
        "",
        loop_md.strip(),
        "",
        "## Learning minus frozen, by viewer (true GMV per viewer-day, paired, 95%)",
        "",
        "| round | days | viewers | n | learning | frozen | gain [95%] |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows.itertuples():
        lines.append(f"| {r.round} | {r.days} | {r.viewers} | {r.n} | {r.learning:.2f} | "
                     f"{r.frozen:.2f} | {r.gain:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}] |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=RESULTS / "loop_newcomers")
    args = parser.parse_args()
    setup, rows = split_gains(args.run)
    loop = json.loads((args.run / "loop.json").read_text())
    report = {"setup": setup, "rounds": loop["rounds"], "gain_vs_frozen": loop["gain_vs_frozen"],
              "by_viewer": rows.to_dict("records")}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    text = markdown(setup, rows, (args.run / "loop.md").read_text())
    args.out.with_suffix(".md").write_text(text)
    shutil.copyfile(args.run / "loop.png", args.out.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
