"""The ranker against the two-tower's own ordering on a synthetic world (availability-aware).

    python benchmarks/ranking.py [--checkpoint RUN] [--preset small] [--seed 0] [--seeds 3]
                                 [--test-requests 10000] [--eval-requests 2000] [--threads 1]

Without ``--checkpoint`` a two-tower is trained first (``TWO_TOWER_TRAIN`` below: the
quality benchmark's world settings, three epochs) into a temporary folder. Then the
``recsys-rank`` job (``recsys.cli.rank.run``; steps and windows in
``recsys.ranking.experiment``) runs with ``--seeds`` ESMM training seeds: impression logs of
the uniform random logging policy in the windows after the two-tower's training data, ESMM
trained with and without the KOL features and without the two-tower score, and on
``--eval-requests`` test requests every live product ranked by the logging policy, recent
popularity, the two-tower score alone (the static ordering), the blend, each ESMM variant and
the truth; each top-10 list's true expected CTR, CVR and CTCVR and NDCG@10 against the true
gains with 95 % intervals over requests, and paired differences against the two-tower.

Results go to ``benchmarks/results/ranking.json`` and ``ranking.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_module

from recsys.cli.rank import run
from recsys.ranking.experiment import LEARNED, NO_KOL, NO_TT, TWO_TOWER
from recsys.ranking.offline_eval import lists_markdown, metric_cells

RESULTS = Path(__file__).resolve().parent / "results"
TWO_TOWER_TRAIN = ("model=two_tower_live", "trainer.max_epochs=3", "trainer.batch_size=512",
                   "trainer.patience=2", "trainer.progress=false")  # fmt: skip
NOTES = """Notes. CTR = expected clicks per impression of the top-10 lists, CVR = expected
conversions per expected click, CTCVR = expected conversions per impression, all from the
world's true response model (`recsys.simulation.response.simulate_outcomes`, position
bias 1 / log2(j + 2)); intervals are normal approximations over requests (delta method for
the ratios), differences are paired on the same requests. NDCG@10 vs truth uses the true
position-free P(click and convert) of every live candidate as gains. `two-tower (static)` is
the retrieval model's own score of each live product (query from everything before the
request, inner product plus repeat bonus, as the service computes it); the rankers read it as
`retrieval_score`. ESMM trains on impressions between the two-tower's validation and test
cut-offs (so that score is out of sample) and everything is tested after the test cut-off.
The KOL ablation retrains ESMM (or zeroes the blend weights) without `streamer_trust`,
`trusted_streamer`, `kol_presenting_now` and `followed_streamer`; each interval covers request
sampling only, so the learned ablations are repeated over training seeds (sd over seeds =
training randomness). Features use the platform's coupon drop schedule (the world's
`truth/coupon_drops`). ESMM train s = training time without validation, one torch thread."""


def _compose(name: str, overrides: list[str]):
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        return compose(config_name=name, overrides=overrides)


def train_two_tower(args, run_dir: Path) -> tuple[Path, dict]:
    """Train the two-tower the ranker re-ranks; its folder and how it was trained."""
    from recsys.recommenders.experiment import train

    overrides = [*TWO_TOWER_TRAIN, f"data=synthetic-{args.preset}",
                 f"data.world_seed={args.seed}", f"trainer.num_threads={args.threads}"]  # fmt: skip
    began = time.perf_counter()
    metrics = train(_compose("train", [*overrides, f"run_dir={run_dir}"]))
    info = {
        "command": "recsys-train " + " ".join(overrides),
        "seconds": round(time.perf_counter() - began, 1),
        "test/product/live/ndcg@10": metrics.get("test/product/live/ndcg@10"),
    }
    return run_dir, info


def rank(args, checkpoint: Path, run_dir: Path) -> tuple[dict, list[str]]:
    overrides = [f"esmm_seeds=[{','.join(str(s) for s in range(args.seeds))}]",
                 f"requests.test={args.test_requests}", f"requests.eval={args.eval_requests}",
                 f"seed={args.seed}", f"threads={args.threads}"]  # fmt: skip
    record = run(_compose("rank", [f"checkpoint={checkpoint}", f"run_dir={run_dir}", *overrides]))
    return record, overrides


def generation_table(g: dict) -> list[str]:
    lines = ["| split | requests | candidates / request | impressions | seconds | impressions/s "
             "| CTR | CVR |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in g.items():
        lines.append(
            f"| {name} | {r['requests']:,} | {r['candidates_per_request']:.0f} | "
            f"{r['impressions']:,} | {r['seconds']:.2f} | {r['impressions_per_s']:,} | "
            f"{r['ctr']:.4f} | {r['cvr']:.4f} |"
        )
    return lines


def esmm_table(e: dict) -> list[str]:
    lines = ["| model | train s | epochs (best) | test click AUC | test CTCVR AUC | test CVR AUC |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in e.items():
        t = r["test"]
        lines.append(
            f"| {name} | {r['train_seconds']:.1f} | {r['epochs']} ({r['best_epoch']}) | "
            f"{t['click_auc']:.4f} | {t['ctcvr_auc']:.4f} | {t['cvr_auc']:.4f} |"
        )
    return lines


def seed_table(title: str, ablation: dict) -> list[str]:
    lines = ["", title, "", "| seed | CTR % | CVR % | CTCVR % | NDCG@10 |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {metric_cells(r)} |" for name, r in ablation.items()
              if name.startswith("seed")]  # fmt: skip
    m = ablation["mean over seeds"]
    cells = [f"{m[k]['value'] * sc:.{d}f} ({(m[k]['sd'] or float('nan')) * sc:.{d}f})"
             for k, sc, d in (("ctr", 100, 2), ("cvr", 100, 2), ("ctcvr", 100, 3),
                              ("ndcg@10", 1, 4))]  # fmt: skip
    return lines + ["| mean (sd over seeds) | " + " | ".join(cells) + " |"]


def markdown(record: dict) -> str:
    ev, f, w = record["lists"], record["features"], record["window_days"]
    lines = [
        "# Ranking: the session-aware ranker against the two-tower ordering",
        "",
        f"`{record['command']}`",
        "",
        f"Machine: {record['machine']}; torch threads: {record['settings']['threads']}. "
        f"World: {record['world']} seed {record['world_seed']}. Two-tower: "
        f"`{record['two_tower']['command']}` ({record['two_tower'].get('seconds')} s); rank "
        f"job: `recsys-rank checkpoint=RUN {' '.join(record['rank_overrides'])}`.",
        "",
        f"Windows (days): ESMM train {w['train']}, ESMM valid {w['valid']}, test {w['test']}.",
        "",
        "## Impression logs (uniform random logging policy, k = 10)",
        "",
        *generation_table(record["generation"]),
        "",
        f"Candidate features: {f['rows']:,} rows in {f['features']:.1f} s "
        f"({f['rows'] / f['features']:,.0f} rows/s; index {f['feature_index']:.1f} s); two-tower "
        f"scores of the same rows in {f['two_tower_scores']:.1f} s.",
        "",
        "## ESMM (held-out later days)",
        "",
        *esmm_table(record["esmm"]),
        "",
        f"## Top-10 lists on {ev['requests']:,} test requests ({ev['candidates']:,} live "
        "candidates), true expectations in % (95 % CI)",
        "",
        lists_markdown(ev),
        *seed_table(f"KOL ablation per training seed ({LEARNED} - {NO_KOL}, same requests):",
                    ev["kol_ablation_by_seed"]),
        *seed_table(f"Two-tower feature ablation per training seed ({LEARNED} - {NO_TT}):",
                    ev["two_tower_ablation_by_seed"]),
        "",
        "Seconds per step: " + ", ".join(f"{k} {v}" for k, v in record["seconds"].items()) + ".",
    ]  # fmt: skip
    return "\n".join(lines + ["", NOTES]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a trained two-tower run on the world")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=3, help="ESMM training seeds")
    parser.add_argument("--test-requests", type=int, default=10_000)
    parser.add_argument("--eval-requests", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint is None:
            checkpoint, two_tower = train_two_tower(args, Path(tmp) / "two_tower")
        else:
            checkpoint, two_tower = args.checkpoint, {"command": "a run given with --checkpoint"}
        record, overrides = rank(args, checkpoint, Path(tmp) / "rank")
    argv = sys.argv[1:] if argv is None else argv
    shown = [a for a in argv if not a.startswith("--checkpoint") and a != str(args.checkpoint)]
    record.pop("ranker")
    record.update(
        command=" ".join(["python benchmarks/ranking.py", *shown]),
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        checkpoint="trained by this benchmark" if args.checkpoint is None else "given",
        world_seed=args.seed,
        two_tower=two_tower,
        rank_overrides=overrides,
        reference=TWO_TOWER,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ranking.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / "ranking.md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
