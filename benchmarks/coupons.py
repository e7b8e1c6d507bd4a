"""Personalised coupons on a simulated world: uplift ranking, policy value at one budget, pacing,
the learned-vs-rule A/B in the market through ``recsys-experiment``, and the cost of one
real-time trigger decision.

    python benchmarks/coupons.py                           # small, the shipped coupons.yaml
    python benchmarks/coupons.py world.preset=tiny world.n_days=4 world.history_days=1 \
        world.grant_days=2 ab_days=1                       # seconds
    python benchmarks/coupons.py --label history14 world.history_days=14 world.n_days=27
    python benchmarks/coupons.py --label history28 world.history_days=28 world.n_days=41

Arguments are ``recsys-coupons`` overrides. Runs the study (``recsys.cli.coupons.run``) into a
temporary folder; then ``recsys-experiment`` with the study's rule tiers (control) against its
learned allocation (treatment) for ``ab_days`` days after the study, in the same world, its
report kept in ``benchmarks/results/coupons_experiment/``; then times
``HesitationTrigger.decide`` on the trained model for hesitating viewers. Writes
``benchmarks/results/coupons.{json,md}`` (or ``coupons_<preset>`` for another preset) and
prints the markdown.
"""

from __future__ import annotations

import json
import logging
import pickle
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_module

from recsys.cli import coupons, experiment
from recsys.coupons.report import ab_lines
from recsys.coupons.trigger import HesitationTrigger

RESULTS = Path(__file__).resolve().parent / "results"


def trigger_latency(run_dir: Path, tier: str, n: int = 2000, seed: int = 0) -> dict:
    """Per-decision time of the hesitation trigger over the trained model, viewers drawn from
    those with features, each hesitating over a product long enough ago."""
    with open(run_dir / "coupon_model.pkl", "rb") as f:
        saved = pickle.load(f)
    model = saved["model"]
    trigger = HesitationTrigger(model, tier, float(saved["lam"]), budget=1e12,
                                price_of=lambda product, now: 199.0, wait_s=300)  # fmt: skip
    rng = np.random.default_rng(seed)
    users = rng.choice(model.features.user_id, n)
    for u in users:
        trigger.observe(int(u), "cart", 0, int(rng.integers(0, 1000)))
    seconds = np.empty(n)
    for i, u in enumerate(users):
        began = time.perf_counter()
        trigger.decide(int(u), 1000)
        seconds[i] = time.perf_counter() - began
    ms = seconds * 1e3
    return {"decisions": n, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
            "granted": len(trigger.granted)}  # fmt: skip


def coupon_experiment(run_dir: Path, record: dict, days: int, keep: Path) -> dict:
    """``recsys-experiment`` with the run's coupon arms over ``days`` days after its study; its
    report and plot copied to ``keep``."""
    w = record["world"]
    overrides = [f"world.preset={w['preset']}", f"world.seed={w['seed']}", f"days={days}",
                 f"open_rate={w['open_rate']}", f"slate_size={w['slate_size']}",
                 f"coupons_run={run_dir}", "arm@control=coupons_rule",
                 "arm@treatment=coupons_learned"]  # fmt: skip
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        cfg = compose(config_name="experiment",
                      overrides=[*overrides, f"out_dir={run_dir / 'experiment'}"])  # fmt: skip
    experiment.run(cfg)
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "sequential.png"):
        shutil.copyfile(run_dir / "experiment" / name, keep / name)
    out = json.loads((run_dir / "experiment" / "coupons_ab.json").read_text())
    words = [o for o in overrides if not o.startswith("coupons_run=")]
    return out | {"command": shlex.join(["recsys-experiment", "coupons_run=RUN",
                                         *words])}  # fmt: skip


def main(overrides: list[str], label: str | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
            cfg = compose(config_name="coupons", overrides=[*overrides, f"out_dir={tmp}"])
        days = int(cfg.ab_days)
        cfg.ab_days = 0  # the A/B runs through recsys-experiment below
        began = time.perf_counter()
        record = coupons.run(cfg)
        preset = record["world"]["preset"]
        name = f"coupons_{label}" if label else \
            "coupons" if preset == "small" else f"coupons_{preset}"  # fmt: skip
        if days > 0:
            record["ab"] = coupon_experiment(Path(tmp), record, days,
                                             RESULTS / f"{name}_experiment")  # fmt: skip
        seconds = time.perf_counter() - began
        markdown = (Path(tmp) / "coupons.md").read_text()
        product_tier = next(t["name"] for t in record["tiers"] if t["scope"] == "product")
        latency = trigger_latency(Path(tmp), product_tier)
    flags = ["--label", label] if label else []
    command = shlex.join(["python", "benchmarks/coupons.py", *flags, *overrides])
    record |= {"command": command, "seconds": round(seconds, 1), "trigger_latency": latency,
               "machine": f"{platform.machine()}, {platform.python_version()}"}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    text = (f"Command: `{command}` ({record['seconds']:.0f} s on 2 shared CPU cores).\n\n"
            + markdown + "\n".join(_experiment_lines(record.get("ab"), name)) + "\n"
            + "\n## Real-time trigger decision\n\n"
            f"`HesitationTrigger.decide` over the trained model, {latency['decisions']} "
            f"hesitating viewers: p50 {latency['p50_ms']:.3f} ms, p99 "
            f"{latency['p99_ms']:.3f} ms per decision ({latency['granted']} granted).\n"
            )  # fmt: skip
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return record


def _experiment_lines(ab: dict | None, name: str) -> list[str]:
    if ab is None:
        return []
    lines = ab_lines(ab, "A/B through recsys-experiment: learned allocation (treatment) vs rule "
                         "tiers (control)")  # fmt: skip
    return lines + ["", f"Command: `{ab['command']}`; its whole report (KPIs per arm, CUPED, "
                        f"SRM, daily looks): `benchmarks/results/{name}_experiment/report.md`."]


if __name__ == "__main__":
    words = sys.argv[1:]
    if words[:1] == ["--label"]:
        main(words[2:], label=words[1])
    else:
        main(words)
