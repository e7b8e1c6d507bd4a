"""Training speed: our sequential model against the original SASRec training loop, same budget.

    python benchmarks/train_speed.py --seconds 600 --step-epochs 1

Data: the ml-1m prefix (``train/input.txt`` of the gSASRec split), leave-one-out. Setting: the
SASRec paper's ml-1m one (maxlen 200, hidden 50, 2 blocks, 1 head, batch 128, Adam 1e-3,
dropout 0.2). The reference is a plain-torch reimplementation of the original training loop
(Kang & McAuley's code as ported to PyTorch): every step samples a batch of users in Python and
numpy (last ``maxlen`` items, next-item targets, one negative per position drawn by rejection
from the items the user has not seen), runs the original block layout (``nn.MultiheadAttention``,
convolutional feed-forward) over every slot, and minimises BCE on the positive and the negative.
Ours is ``recsys.models.sequential`` trained by the shared ``Trainer``, once per chosen variant:
``bce`` (the reference's objective: what the speed of the code alone buys), ``full_ce`` (the
objective we train with by default, softmax over the whole catalogue computed in row chunks with
its gradients, ``recsys.tasks.chunked_ce``) and ``full_ce:unchunked`` (the same loss keeping the
whole batch's logits for the backward pass, as before the chunked path).

First the training steps of every model are timed in turns (``harness.interleaved``: one step
of each per round, so load from other processes falls on all alike) for a load-robust
throughput ratio: after one untimed epoch, ``--step-epochs`` whole epochs, so that each of ours
runs every one of its length-bucketed batches (an epoch's first batches are shorter than its
mean: ml-1m's first 28 of 48 average 105 positions against 128). Then each trains for the same
budget of this process's CPU time (not wall time: on a shared machine other jobs would
otherwise decide how much each model trains), one after the other, with the same thread count,
validated once per pass over the users (full ranking, seen items removed, every user's
validation target; validation time is not training time). Reported: sequences per CPU second,
CPU seconds per epoch, the best validation NDCG@10 within the budget, the CPU seconds each
needed to reach the reference's best validation NDCG@10 (and the reference's time to it over
ours), and peak resident memory.
Writes ``benchmarks/results/train_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from harness.command import recorded_command
from harness.interleaved import interleaved_throughput
from harness.reference_sasrec import (
    BATCH,
    BLOCKS,
    DIM,
    DROPOUT,
    HEADS,
    LR,
    MAXLEN,
    ReferenceRecommender,
    ReferenceSASRec,
    sample_batch,
)
from torch import nn

from recsys.core import Recommender
from recsys.data.interactions import UserSequences
from recsys.datasets import make_split
from recsys.evaluation import evaluate
from recsys.inputs.tokens import TokenLog
from recsys.inputs.windows import WindowDataset, training_windows
from recsys.models.sequential import SequentialConfig
from recsys.recommenders.sequential import SequentialRecommender
from recsys.tasks.sequential import LossConfig, SequentialTask
from recsys.training.seeding import step_generator
from recsys.training.trainer import Trainer, TrainerConfig
from recsys.training.validation import Validation
from recsys.utils.resources import measure

RESULTS = Path(__file__).resolve().parent / "results"


# -- the reference loop -------------------------------------------------------------------


def reference_step(train: UserSequences, seed: int):
    """(recommender over the model, one-step closure returning the sequences trained on) of
    the original loop."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    rows = [train.row(u) for u in range(train.n_users)]
    model = ReferenceSASRec(train.n_items)
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.98))
    bce = nn.BCEWithLogitsLoss()

    def step() -> int:
        model.train()
        seq, pos, neg = sample_batch(rows, train.n_items, rng)
        pos_logits, neg_logits = model(seq, pos, neg)
        idx = np.where(pos != 0)
        loss = bce(pos_logits[idx], torch.ones_like(pos_logits[idx]))
        loss = loss + bce(neg_logits[idx], torch.zeros_like(neg_logits[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return BATCH

    return ReferenceRecommender(model), step


def active_users(split) -> int:
    """Users with a next-item target (at least two training events)."""
    return int(np.count_nonzero(split.train.lengths > 1))


def steps_per_epoch(split) -> int:
    """Batches in one pass over the active users."""
    return max(-(-active_users(split) // BATCH), 1)


def train_for(split, rec: Recommender, step, seconds: float) -> tuple[Recommender, dict]:
    """Steps until ``seconds`` of this process's CPU time are spent on them, validated after
    every pass's worth of steps (validation time excluded). CPU time, not wall time, so that
    other jobs on a shared machine do not decide how much each model trains."""
    active, per_epoch = active_users(split), steps_per_epoch(split)
    steps, seqs, elapsed, curve = 0, 0, 0.0, []
    while elapsed < seconds:
        started = time.process_time()
        seqs += step()
        steps, elapsed = steps + 1, elapsed + time.process_time() - started
        if steps % per_epoch == 0 or elapsed >= seconds:
            curve.append((round(elapsed, 2), _validate(rec, split)["val_ndcg@10"]))
    return rec, {
        "steps": steps,
        "train_cpu_seconds": elapsed,
        "sequences_per_cpu_second": seqs / elapsed,
        "cpu_seconds_per_epoch": elapsed / (seqs / active),
        "epochs": seqs / active,
        "curve": curve,
    }


def our_recommender(split, seed: int, variant: str, args):
    """Our model for ``variant``: a loss name, ``full_ce:unchunked`` for the whole-batch
    full-CE path, ``full_ce:bf16`` for bfloat16 products inside the chunked one."""
    loss, _, option = variant.partition(":")
    return SequentialRecommender(
        model=SequentialConfig(
            maxlen=MAXLEN, dim=DIM, n_blocks=BLOCKS, n_heads=HEADS, dropout=DROPOUT
        ),
        loss=LossConfig(
            name=loss,
            n_negatives=args.negatives,
            ce_chunk_rows=0 if option == "unchunked" else args.chunk_rows,
            ce_matmul_dtype="bfloat16" if option == "bf16" else "float32",
        ),
        trainer=TrainerConfig(
            max_epochs=10**6,
            patience=0,
            batch_size=BATCH,
            lr=LR,
            bucket_pool=args.bucket_pool,
            seed=seed,
            checkpoint=False,
            progress=False,
            log_every_steps=10**9,
        ),
        validation=Validation(splits={"product": split}, protocol="full", max_users=None),
    )


def our_step(split, seed: int, variant: str, args):
    """(the recommender, a one-step closure of our trainer: the step ``Trainer.fit`` runs,
    cycling over its epochs' batches)."""
    rec = our_recommender(split, seed, variant, args)
    model = rec.build(split.train)
    c = rec.model_config
    windows = training_windows(TokenLog.from_sequences(split.train), maxlen=c.maxlen,
                               heads=c.head_kinds, n_gap_buckets=c.n_gap_buckets)  # fmt: skip
    dataset = WindowDataset(windows, targets="next", n_entities=model.tables.sizes)
    task = SequentialTask(rec.loss, n_entities=model.tables.sizes)
    trainer = Trainer(config=rec.trainer, model=model, task=task, dataset=dataset)
    batches = iter(())
    epoch = 0

    def step() -> int:
        nonlocal batches, epoch
        batch = next(batches, None)
        if batch is None:
            batches = iter(dataset.epoch(batch_size=BATCH, seed=seed, epoch=epoch,
                                         bucket_pool=args.bucket_pool))  # fmt: skip
            batch, epoch = next(batches), epoch + 1
        trainer._train_step(batch, step_generator(seed, epoch, 0))
        return int(batch.targets["product"].shape[0])

    return rec, step


def time_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """Training seconds at the first validation at or above ``target`` (None: never)."""
    return next((t for t, value in curve if value >= target), None)


def lookup_speed(n_items: int, repeats: int = 50) -> dict:
    """Microseconds per (B, L) lookup, forward and forward + backward: torchrec vs nn.Embedding."""
    from recsys.models.embeddings import EntityTables

    tables = EntityTables(sizes={"product": n_items}, dim=DIM)
    weight = tables.weight("product")
    ids = torch.randint(1, n_items, (BATCH, MAXLEN))
    ways = {
        "torchrec_embedding_collection": lambda: tables({"product": ids})["product"],
        "nn_functional_embedding": lambda: nn.functional.embedding(ids, weight),
    }
    out = {}
    for name, lookup in ways.items():
        for mode in ("forward", "forward_backward"):
            lookup()
            started = time.perf_counter()
            for _ in range(repeats):
                y = lookup()
                if mode == "forward_backward":
                    y.sum().backward()
            out[f"{name}/{mode}_us"] = round((time.perf_counter() - started) / repeats * 1e6, 1)
    return out


def _validate(rec: Recommender, split) -> dict:
    m = evaluate(rec, split, protocol="full", stage="valid", ks=(10,)).metrics
    return {"val_ndcg@10": m["ndcg@10"], "val_hr@10": m["hr@10"]}


def run_one(name: str, fn, split, args) -> dict:
    with measure() as used:
        rec, stats = fn()
    stats.update(_validate(rec, split))
    stats["best_val_ndcg@10"] = max([v for _, v in stats["curve"]] + [stats["val_ndcg@10"]])
    stats.update(
        peak_rss_mb=round(used.peak_rss_mb, 1), peak_rss_delta_mb=round(used.peak_delta_mb, 1)
    )
    print(
        name,
        {k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items() if k != "curve"},
        flush=True,
    )
    return stats


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=600.0, help="CPU-seconds budget of each model")
    p.add_argument(
        "--variants",
        nargs="+",
        default=["full_ce", "full_ce:unchunked", "bce"],
        help="our losses (recsys.tasks.sequential), each trained for the same budget; "
        "full_ce:unchunked keeps the whole batch's logits",
    )
    p.add_argument("--chunk-rows", type=int, default=LossConfig().ce_chunk_rows,
                   help="full_ce: rows of logits per chunk")  # fmt: skip
    p.add_argument("--negatives", type=int, default=256, help="for sampled_softmax and gbce")
    p.add_argument("--bucket-pool", type=int, default=64, help="ours: length-bucketed batches")
    p.add_argument("--step-epochs", type=int, default=1,
                   help="epochs of interleaved step timing, after one untimed")  # fmt: skip
    p.add_argument("--only", choices=("reference", "ours"), default=None, help="run one side")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=str(RESULTS))
    return p.parse_args(argv)


def step_timing(split, args: argparse.Namespace) -> dict:
    """Steps of every model timed in turns, with CPU throughput over the reference's."""
    steps = {"reference": reference_step(split.train, args.seed)[1]}
    steps.update({f"ours ({v})": our_step(split, args.seed, v, args)[1] for v in args.variants})
    per_epoch = steps_per_epoch(split)
    interleaved = interleaved_throughput(steps, rounds=per_epoch * (1 + args.step_epochs),
                                         warmup=per_epoch)  # fmt: skip
    ref_cpu = interleaved["reference"]["sequences_per_cpu_second"]
    for row in interleaved.values():
        row["cpu_throughput_vs_reference"] = round(row["sequences_per_cpu_second"] / ref_cpu, 2)
    print("interleaved", interleaved, flush=True)
    return interleaved


def train_all(split, args: argparse.Namespace) -> dict:
    """Every model trained for the same CPU budget (``--only``: one side)."""
    runners = {"reference": lambda: train_for(split, *reference_step(split.train, args.seed),
                                              args.seconds)}  # fmt: skip
    for variant in args.variants:
        runners[f"ours ({variant})"] = lambda v=variant: train_for(
            split, *our_step(split, args.seed, v, args), args.seconds
        )
    return {
        name: run_one(name, fn, split, args)
        for name, fn in runners.items()
        if args.only is None or name.startswith(args.only)
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    split, _ = make_split("ml-1m")
    load_before = os.getloadavg()
    interleaved = step_timing(split, args)
    results = train_all(split, args)
    if args.only:
        return results
    lookups = lookup_speed(split.n_items)
    print("lookup", lookups, flush=True)
    report = {
        "command": recorded_command(
            "benchmarks/train_speed.py", sys.argv[1:] if argv is None else argv
        ),
        "dataset": "ml-1m (train/input.txt prefix), leave-one-out; validation targets, "
        "full ranking, seen items removed",
        "setting": _setting(args),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "interleaved_steps": interleaved,
        "results": results,
        "ratios_vs_reference": speed_ratios(results),
        "embedding_lookup_per_batch": lookups,
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "train_speed.md").write_text(markdown(report))
    print(markdown(report))
    return report


def _setting(args: argparse.Namespace) -> dict:
    return {"maxlen": MAXLEN, "dim": DIM, "blocks": BLOCKS, "heads": HEADS, "dropout": DROPOUT,
            "batch": BATCH, "lr": LR, "our_variants": args.variants,
            "chunk_rows": args.chunk_rows, "our_bucket_pool": args.bucket_pool,
            "budget_seconds": args.seconds, "threads": args.threads,
            "step_epochs": args.step_epochs}  # fmt: skip


def speed_ratios(results: dict) -> dict:
    """Per model of ours: throughput and best validation NDCG@10 over the reference's, and the
    training time to the reference's best validation NDCG@10 (the reference's own time to it
    over ours: above 1 is faster)."""
    reference = results["reference"]
    target = reference["best_val_ndcg@10"]
    ref_time = time_to_reach(reference["curve"], target)
    out = {}
    for name, r in results.items():
        if name == "reference":
            continue
        ours_time = time_to_reach(r["curve"], target)
        out[name] = {
            "throughput": round(
                r["sequences_per_cpu_second"] / reference["sequences_per_cpu_second"], 2
            ),
            "val_ndcg@10": round(r["best_val_ndcg@10"] / max(target, 1e-12), 2),
            "seconds_to_reference_best": None if ours_time is None else round(ours_time, 1),
            "reference_seconds_to_its_best": None if ref_time is None else round(ref_time, 1),
            "time_to_reference_best_speedup": None
            if ours_time is None or ref_time is None
            else round(ref_time / max(ours_time, 1e-9), 2),
        }
    return out


def markdown(report: dict) -> str:
    head = [
        "model",
        "sequences / CPU s",
        "CPU s / epoch",
        "epochs",
        "steps",
        "best val NDCG@10",
        "final val NDCG@10",
        "final val HR@10",
        "peak RSS MiB",
    ]
    lines = [
        f"# train_speed\n\n`{report['command']}`\n\n{report['dataset']}; {report['setting']}\n",
        f"Load average before / after: {report['machine']['loadavg_before']} / "
        f"{report['machine']['loadavg_after']} on {report['machine']['cpus']} CPUs (the models "
        "run one after the other, so load changes between them move the ratios).\n",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, r in report["results"].items():
        lines.append(
            f"| {name} | {r['sequences_per_cpu_second']:.1f} | {r['cpu_seconds_per_epoch']:.1f} | "
            f"{r['epochs']:.2f} | {r['steps']} | {r['best_val_ndcg@10']:.4f} | "
            f"{r['val_ndcg@10']:.4f} | {r['val_hr@10']:.4f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    lines.append("\nOurs / reference, after the same CPU time:\n")
    for name, r in report["ratios_vs_reference"].items():
        reach = (
            f"reaches the reference's best in {r['seconds_to_reference_best']} s against its "
            f"{r['reference_seconds_to_its_best']} s ({r['time_to_reference_best_speedup']}x)"
            if r["seconds_to_reference_best"] is not None and r["time_to_reference_best_speedup"]
            else "never reaches the reference's best within the budget"
            if r["reference_seconds_to_its_best"] is not None
            else "the reference was not validated within the budget"
        )
        lines.append(
            f"- {name}: throughput {r['throughput']}x, best validation NDCG@10 "
            f"{r['val_ndcg@10']}x; {reach}"
        )
    lines.append(
        "\nSteps timed in turns (one step of each model per round, so load from other "
        "processes falls on all alike), over whole epochs of ours after an untimed one; CPU "
        "seconds are the process's own:\n"
    )
    lines.append(
        "| model | sequences / CPU s | sequences / wall s | median step CPU s | vs reference |"
    )
    lines.append("|---|---|---|---|---|")
    for name, r in report["interleaved_steps"].items():
        lines.append(
            f"| {name} | {r['sequences_per_cpu_second']} | {r['sequences_per_wall_second']} | "
            f"{r['median_step_cpu_seconds']} | {r['cpu_throughput_vs_reference']}x |"
        )
    lines.append("")
    lines.append(
        f"Embedding lookup of one ({BATCH}, {MAXLEN}) batch, microseconds: "
        f"{report['embedding_lookup_per_batch']}\n"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
