"""Ablation of a model setting's knobs on several world seeds, judged on validation only.

    python benchmarks/ablation.py --model sasrec_live --world-seeds 0 1 --max-epochs 2

Each knob that the setting turns on (or moves off its family default) is switched back, one at
a time, and the model is retrained under the same trainer budget on each world seed. The
verdict reads only the validation targets (the early-stopping monitor: the mean over heads of
NDCG@10 under the data's validation protocol); test targets are never scored. A knob *helps*
when switching it back lowers the monitor by more than ``--min-gain`` on every world seed (the
default, 0.001, is about the spread of the product head's NDCG@10 across training seeds in
``benchmarks/results/seeds``: a smaller gain is not told apart from noise).

``--rejudge REPORT.json`` recomputes the verdicts of a finished report's recorded runs under
another ``--min-gain`` (and rewrites its markdown) without training anything.

Writes ``benchmarks/results/ablation_<model>.{json,md}`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from recsys.data.splits import for_protocol
from recsys.evaluation import evaluate
from recsys.recommenders import DataConfig, build_recommender, load_sequential_data

RESULTS = Path(__file__).resolve().parent / "results"

# Knob -> the overrides that switch it back to the family default (dependants go with it).
SASREC_LIVE_KNOBS: dict[str, dict] = {
    "maxlen": {"model.maxlen": 50},
    "dim": {"model.dim": 64},
    "repeat_bonus": {
        "model.repeat_bonus": False,
        "model.seller_bonus": False,
        "task.repeat_scales": [],
    },  # fmt: skip
    "seller_bonus": {"model.seller_bonus": False},
    "side_in_output": {"model.side_in_output": False},
    "user_embedding": {"model.user_embedding": False},
    "live_training": {"task.live_training": False},
    "target_lag": {"task.target_lag": 0.0, "loss.lag_loss_weight": 0.0},
    "lag_loss_weight": {"loss.lag_loss_weight": 0.0},
    "side_features": {"task.side_features": ["category", "price_band", "seller"]},
}
KNOBS = {"sasrec_live": SASREC_LIVE_KNOBS}
# Knobs read off the full setting's trained model instead of retraining: the repeat bonus's
# scale calibrated on validation, against its uncalibrated scale 1.
CALIBRATION_KNOB = "repeat_scales"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="sasrec_live", choices=sorted(KNOBS))
    p.add_argument("--data", default="synthetic-small")
    p.add_argument("--world-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--max-epochs", type=int, default=2, help="the same budget for every run")
    p.add_argument("--knobs", nargs="*", default=None, help="a subset (default: all)")
    p.add_argument(
        "--val-users", type=int, default=2000, help="validation users for early stopping and "
        "calibration"
    )  # fmt: skip
    p.add_argument(
        "--score-users", type=int, default=5000, help="validation users the verdict reads "
        "(a seeded sample, the same for every variant)"
    )  # fmt: skip
    p.add_argument("--min-gain", type=float, default=0.001, help="gain a knob must beat")
    p.add_argument("--rejudge", type=Path, default=None, help="a finished report to re-judge")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out-dir", default=str(RESULTS))
    return p.parse_args(argv)


def composed(args: argparse.Namespace, seed: int, overrides: dict) -> dict:
    """The ``recsys-train`` configuration of one run, without Hydra's run folder."""
    args = [f"model={args.model}", f"data={args.data}", f"data.world_seed={seed}",
            f"trainer.max_epochs={args.max_epochs}", f"trainer.val_max_users={args.val_users}",
            "trainer.checkpoint=false", "trainer.progress=false", "run_dir=unused"]  # fmt: skip
    args += [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        cfg = compose(config_name="train", overrides=args)
    return OmegaConf.to_container(cfg, resolve=True)


def valid_scores(rec, data, cfg: dict, max_users: int) -> dict:
    """Validation NDCG@10 per head on a seeded sample of validation users (the same sample
    for every variant), and the heads' mean."""
    protocol = DataConfig(**cfg["data"]).val_protocol
    heads = {}
    for head, split in data.splits.items():
        res = evaluate(rec.for_head(head), for_protocol(split, protocol), protocol=protocol,
                       stage="valid", ks=(10,), max_users=max_users, seed=0)  # fmt: skip
        heads[head] = res.metrics["ndcg@10"]
    return {
        "valid_ndcg@10": {h: round(v, 4) for h, v in heads.items()},
        "monitor": round(sum(heads.values()) / len(heads), 4),
    }


def run_one(cfg: dict, data, score_users: int) -> tuple[dict, object]:
    """Validation metrics of one trained variant (test targets are never scored)."""
    started = time.perf_counter()
    rec = build_recommender(cfg, data, run_dir=None)
    split = data.train_split
    rec.fit(split.train, item_features=split.item_features)
    out = valid_scores(rec, data, cfg, score_users)
    out.update(best_epoch=rec.fit_result.best_epoch, calibrated=dict(rec.calibrated),
               seconds=round(time.perf_counter() - started, 1))  # fmt: skip
    return out, rec


def uncalibrated(rec, data, cfg: dict, score_users: int) -> dict:
    """The trained model's validation scores with every repeat-bonus scale back at 1."""
    for head in rec.calibrated:
        rec.model.repeat[head].score_scale.fill_(1.0)
    scores = valid_scores(rec, data, cfg, score_users)
    return {**scores, "calibrated": {h: 1.0 for h in rec.calibrated}}


def verdicts(runs: dict, seeds: list[int], min_gain: float) -> dict[str, dict]:
    """Per knob: the monitor's change from switching it back, per seed, and whether it helps
    (gains more than ``min_gain`` on every seed)."""
    out = {}
    for knob, per_seed in runs.items():
        if knob == "full":
            continue
        deltas = {s: round(runs["full"][s]["monitor"] - per_seed[s]["monitor"], 4) for s in seeds}
        out[knob] = {"gain": deltas, "helps": all(d > min_gain for d in deltas.values())}
    return out


def rejudge(path: Path, min_gain: float, argv: list[str] | None) -> dict:
    """A finished report's verdicts again under ``min_gain``; JSON and markdown rewritten."""
    report = json.loads(path.read_text())
    seeds = report["world_seeds"]
    report["runs"] = {n: {int(s): r for s, r in per.items()} for n, per in report["runs"].items()}
    report["verdicts"] = verdicts(report["runs"], seeds, min_gain)
    report["min_gain"] = min_gain
    report["rejudged"] = "python benchmarks/ablation.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    path.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    path.with_suffix(".md").write_text(table)
    print(table)
    return report


def markdown(report: dict) -> str:
    seeds = report["world_seeds"]
    heads = sorted(report["runs"]["full"][seeds[0]]["valid_ndcg@10"])
    head = ["variant", *[f"seed {s} {h}" for s in seeds for h in heads],
            *[f"seed {s} monitor" for s in seeds], "gain of the knob", "helps"]  # fmt: skip
    lines = [
        f"# Ablation of `{report['model']}` on {report['data']} (validation only)",
        "",
        f"`{report['command']}`",
        "",
        "Each row switches one knob back to its family default and retrains under the same "
        f"budget ({report['max_epochs']} epochs, early stopping on validation); "
        f"`{CALIBRATION_KNOB}` is the full setting's model scored without its calibrated "
        "repeat-bonus scale. Metric: "
        "validation NDCG@10 per head under the live protocol, on "
        f"{report['score_users']} validation users (a seeded sample, the same for every row); "
        "monitor = mean over heads. "
        "Gain = full setting's monitor minus the row's, per world seed; a knob helps when it "
        f"gains more than {report.get('min_gain', 0.0)} on every seed (about the spread across "
        "training seeds). Test targets are never scored."
        + (f" Verdicts re-judged by `{report['rejudged']}`." if "rejudged" in report else ""),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, per_seed in report["runs"].items():
        v = report["verdicts"].get(name)
        cells = [f"{per_seed[s]['valid_ndcg@10'][h]:.4f}" for s in seeds for h in heads]
        cells += [f"{per_seed[s]['monitor']:.4f}" for s in seeds]
        gain = ", ".join(f"{v['gain'][s]:+.4f}" for s in seeds) if v else ""
        helps = ("yes" if v["helps"] else "no") if v else ""
        label = "full setting" if name == "full" else f"without {name}"
        lines.append("| " + " | ".join([label, *cells, gain, helps]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.rejudge is not None:
        return rejudge(args.rejudge, args.min_gain, argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    knobs = KNOBS[args.model]
    names = ["full", *(args.knobs if args.knobs is not None else knobs)]
    runs: dict[str, dict] = {n: {} for n in [*names, CALIBRATION_KNOB]}
    data = {}
    for name in names:  # knob by knob, both seeds: a stopped run still has whole rows
        for seed in args.world_seeds:
            cfg = composed(args, seed, knobs.get(name, {}))
            if seed not in data:
                data[seed] = load_sequential_data(DataConfig(**cfg["data"]))
            runs[name][seed], rec = run_one(cfg, data[seed], args.score_users)
            print(f"seed {seed} {name}: {runs[name][seed]}", flush=True)
            if name == "full":
                runs[CALIBRATION_KNOB][seed] = uncalibrated(rec, data[seed], cfg, args.score_users)
        write(args, knobs, runs, argv)
    return write(args, knobs, runs, argv, show=True)


def write(args, knobs, runs, argv, show: bool = False) -> dict:
    """The report of the rows finished so far (JSON and markdown)."""
    runs = {n: r for n, r in runs.items() if len(r) == len(args.world_seeds)}
    report = {
        "model": args.model,
        "data": args.data,
        "world_seeds": args.world_seeds,
        "max_epochs": args.max_epochs,
        "val_users": args.val_users,
        "score_users": args.score_users,
        "command": "python benchmarks/ablation.py "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "knobs": {
            **{n: knobs[n] for n in runs if n in knobs},
            CALIBRATION_KNOB: "the full setting's model with repeat scales at 1",
        },
        "runs": runs,
        "verdicts": verdicts(runs, args.world_seeds, args.min_gain),
        "min_gain": args.min_gain,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        },  # fmt: skip
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"ablation_{args.model}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    stem.with_suffix(".md").write_text(table)
    if show:
        print(table)
    return report


if __name__ == "__main__":
    main()
