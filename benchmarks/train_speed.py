"""Training speed: our sequential model against the original SASRec training loop, same budget.

    python benchmarks/train_speed.py --seconds 600

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

All train for the same wall-clock budget one after the other in this process, with the same
thread count, and are validated once per pass over the users (full ranking, seen items removed,
every user's validation target; validation time is not training time). Reported: sequences per
second, seconds per epoch, the best validation NDCG@10 / HR@10 within the budget, the training
seconds each needed to reach the reference's best validation NDCG@10 (and the ratio of the
reference's time to it over ours), and peak resident memory.
Writes ``benchmarks/results/train_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recsys.core import Recommender
from recsys.data.interactions import UserSequences
from recsys.datasets import make_split
from recsys.evaluation import evaluate
from recsys.models.sequential import SequentialConfig
from recsys.recommenders.sequential import SequentialRecommender
from recsys.tasks.sequential import LossConfig
from recsys.training.trainer import TrainerConfig
from recsys.training.validation import Validation
from recsys.utils.resources import measure

RESULTS = Path(__file__).resolve().parent / "results"
MAXLEN, DIM, BLOCKS, HEADS, DROPOUT, BATCH, LR = 200, 50, 2, 1, 0.2, 128, 1e-3


# -- the reference: the original SASRec model and loop, in plain torch -------------------------


class PointWiseFeedForward(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(dim, dim, 1), nn.Conv1d(dim, dim, 1)
        self.drop1, self.drop2, self.relu = nn.Dropout(dropout), nn.Dropout(dropout), nn.ReLU()

    def forward(self, x):
        out = self.conv2(self.drop1(self.relu(self.conv1(x.transpose(-1, -2)))))
        return self.drop2(out).transpose(-1, -2) + x  # (B, L, D)


class ReferenceSASRec(nn.Module):
    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items, DIM, padding_idx=0)
        self.pos_emb = nn.Embedding(MAXLEN, DIM)
        self.emb_dropout = nn.Dropout(DROPOUT)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(DIM, eps=1e-8) for _ in range(BLOCKS))
        self.attns = nn.ModuleList(
            nn.MultiheadAttention(DIM, HEADS, DROPOUT) for _ in range(BLOCKS)
        )
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(DIM, eps=1e-8) for _ in range(BLOCKS))
        self.ffns = nn.ModuleList(PointWiseFeedForward(DIM, DROPOUT) for _ in range(BLOCKS))
        self.last_norm = nn.LayerNorm(DIM, eps=1e-8)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)

    def log2feats(self, seqs_np: np.ndarray) -> torch.Tensor:
        ids = torch.from_numpy(seqs_np)
        seqs = self.item_emb(ids) * DIM**0.5
        positions = np.tile(np.arange(ids.shape[1]), [ids.shape[0], 1])
        seqs = self.emb_dropout(seqs + self.pos_emb(torch.from_numpy(positions)))
        keep = (ids != 0).unsqueeze(-1)
        seqs = seqs * keep
        length = seqs.shape[1]
        causal = ~torch.tril(torch.ones((length, length), dtype=torch.bool))
        for norm, attn, ffn_norm, ffn in zip(
            self.attn_norms, self.attns, self.ffn_norms, self.ffns, strict=True
        ):
            seqs = seqs.transpose(0, 1)  # (L, B, D) for MultiheadAttention
            q = norm(seqs)
            out, _ = attn(q, seqs, seqs, attn_mask=causal)
            seqs = (q + out).transpose(0, 1)
            seqs = ffn(ffn_norm(seqs)) * keep
        return self.last_norm(seqs)  # (B, L, D)

    def forward(self, seq, pos, neg):
        feats = self.log2feats(seq)
        pos_logits = (feats * self.item_emb(torch.from_numpy(pos))).sum(-1)
        neg_logits = (feats * self.item_emb(torch.from_numpy(neg))).sum(-1)
        return pos_logits, neg_logits


def random_neq(low: int, high: int, seen: set, rng: np.random.Generator) -> int:
    t = int(rng.integers(low, high))
    while t in seen:
        t = int(rng.integers(low, high))
    return t


def sample_batch(rows: list[np.ndarray], n_items: int, rng: np.random.Generator):
    """The original sampler: random users, their last items, targets and one negative each."""
    seq = np.zeros((BATCH, MAXLEN), dtype=np.int64)
    pos, neg = np.zeros_like(seq), np.zeros_like(seq)
    for b in range(BATCH):
        user = int(rng.integers(0, len(rows)))
        while len(rows[user]) <= 1:
            user = int(rng.integers(0, len(rows)))
        items = rows[user]
        seen, nxt, idx = set(items.tolist()), items[-1], MAXLEN - 1
        for i in reversed(items[:-1]):
            seq[b, idx], pos[b, idx] = i, nxt
            neg[b, idx] = random_neq(2, n_items, seen, rng)
            nxt, idx = i, idx - 1
            if idx == -1:
                break
    return seq, pos, neg


def train_reference(split, seconds: float, seed: int) -> tuple[Recommender, dict]:
    """The original loop for ``seconds`` of training, validated after every pass's worth of
    steps (validation time excluded)."""
    train = split.train
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    rows = [train.row(u) for u in range(train.n_users)]
    active = sum(len(r) > 1 for r in rows)
    steps_per_epoch = max(active // BATCH, 1)
    model = ReferenceSASRec(train.n_items)
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.98))
    bce = nn.BCEWithLogitsLoss()
    steps, elapsed, curve = 0, 0.0, []
    while elapsed < seconds:
        model.train()
        started = time.perf_counter()
        seq, pos, neg = sample_batch(rows, train.n_items, rng)
        pos_logits, neg_logits = model(seq, pos, neg)
        idx = np.where(pos != 0)
        loss = bce(pos_logits[idx], torch.ones_like(pos_logits[idx]))
        loss = loss + bce(neg_logits[idx], torch.zeros_like(neg_logits[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps, elapsed = steps + 1, elapsed + time.perf_counter() - started
        if steps % steps_per_epoch == 0 or elapsed >= seconds:
            curve.append((elapsed, _validate(ReferenceRecommender(model), split)["val_ndcg@10"]))
    seqs = steps * BATCH
    return ReferenceRecommender(model), {
        "steps": steps,
        "train_seconds": elapsed,
        "sequences_per_second": seqs / elapsed,
        "seconds_per_epoch": elapsed / (seqs / active),
        "epochs": seqs / active,
        "curve": curve,
    }


class ReferenceRecommender(Recommender):
    """Scores every item from the reference model's last hidden state (for evaluation)."""

    name = "reference_sasrec"

    def __init__(self, model: ReferenceSASRec) -> None:
        self.model = model.eval()

    def fit(self, train, *, item_features=None):
        return self

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        seq = np.zeros((len(users), MAXLEN), dtype=np.int64)
        for b, u in enumerate(users):
            items = history.row(int(u))[-MAXLEN:]
            seq[b, MAXLEN - len(items) :] = items
        with torch.no_grad():
            last = self.model.log2feats(seq)[:, -1]  # (B, D)
            return (last @ self.model.item_emb.weight.t()).numpy()


# -- ours ---------------------------------------------------------------------------------------


def train_ours(split, seconds: float, seed: int, variant: str, args: argparse.Namespace):
    """``variant`` is a loss name, ``full_ce:unchunked`` for the whole-batch full-CE path."""
    loss, _, option = variant.partition(":")
    train = split.train
    rec = SequentialRecommender(
        model=SequentialConfig(
            maxlen=MAXLEN, dim=DIM, n_blocks=BLOCKS, n_heads=HEADS, dropout=DROPOUT
        ),
        loss=LossConfig(
            name=loss,
            n_negatives=args.negatives,
            ce_chunk_rows=0 if option == "unchunked" else args.chunk_rows,
        ),
        trainer=TrainerConfig(
            max_epochs=10**6,
            max_seconds=seconds,
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
    rec.fit(train)
    fit = rec.fit_result
    active = max(len(train.lengths[train.lengths > 1]), 1)
    epochs = fit.sequences_per_second * fit.train_seconds / active
    elapsed = np.cumsum([row["time/epoch_seconds"] for row in fit.history])
    curve = [(float(t), row["val/ndcg@10"]) for t, row in zip(elapsed, fit.history, strict=True)]
    return rec, {
        "steps": fit.steps,
        "train_seconds": fit.train_seconds,
        "sequences_per_second": fit.sequences_per_second,
        "seconds_per_epoch": fit.train_seconds / max(epochs, 1e-9),
        "epochs": epochs,
        "curve": curve,
    }


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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=600.0, help="training budget of each model")
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
    p.add_argument("--only", choices=("reference", "ours"), default=None, help="run one side")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    split, _ = make_split("ml-1m")
    load_before = os.getloadavg()
    runners = {"reference": lambda: train_reference(split, args.seconds, args.seed)}
    for variant in args.variants:
        runners[f"ours ({variant})"] = partial(
            train_ours, split, args.seconds, args.seed, variant, args
        )
    results = {
        name: run_one(name, fn, split, args)
        for name, fn in runners.items()
        if args.only is None or name.startswith(args.only)
    }
    if args.only:
        return results
    lookups = lookup_speed(split.n_items)
    print("lookup", lookups, flush=True)
    ratios = speed_ratios(results)
    report = {
        "command": "python benchmarks/train_speed.py "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "dataset": "ml-1m (train/input.txt prefix), leave-one-out; validation targets, "
        "full ranking, seen items removed",
        "setting": {
            "maxlen": MAXLEN,
            "dim": DIM,
            "blocks": BLOCKS,
            "heads": HEADS,
            "dropout": DROPOUT,
            "batch": BATCH,
            "lr": LR,
            "our_variants": args.variants,
            "chunk_rows": args.chunk_rows,
            "our_bucket_pool": args.bucket_pool,
            "budget_seconds": args.seconds,
            "threads": args.threads,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "results": results,
        "ratios_vs_reference": ratios,
        "embedding_lookup_per_batch": lookups,
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "train_speed.md").write_text(markdown(report))
    print(markdown(report))
    return report


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
            "throughput": round(r["sequences_per_second"] / reference["sequences_per_second"], 2),
            "val_ndcg@10": round(r["best_val_ndcg@10"] / max(target, 1e-12), 2),
            "seconds_to_reference_best": None if ours_time is None else round(ours_time, 1),
            "reference_seconds_to_its_best": round(ref_time, 1),
            "time_to_reference_best_speedup": None
            if ours_time is None
            else round(ref_time / max(ours_time, 1e-9), 2),
        }
    return out


def markdown(report: dict) -> str:
    head = [
        "model",
        "sequences/s",
        "s/epoch",
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
            f"| {name} | {r['sequences_per_second']:.1f} | {r['seconds_per_epoch']:.1f} | "
            f"{r['epochs']:.2f} | {r['steps']} | {r['best_val_ndcg@10']:.4f} | "
            f"{r['val_ndcg@10']:.4f} | {r['val_hr@10']:.4f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    lines.append("\nOurs / reference, after the same wall time:\n")
    for name, r in report["ratios_vs_reference"].items():
        reach = (
            f"reaches the reference's best in {r['seconds_to_reference_best']} s against its "
            f"{r['reference_seconds_to_its_best']} s ({r['time_to_reference_best_speedup']}x)"
            if r["seconds_to_reference_best"] is not None
            else "never reaches the reference's best within the budget"
        )
        lines.append(
            f"- {name}: throughput {r['throughput']}x, best validation NDCG@10 "
            f"{r['val_ndcg@10']}x; {reach}"
        )
    lines.append("")
    lines.append(
        f"Embedding lookup of one ({BATCH}, {MAXLEN}) batch, microseconds: "
        f"{report['embedding_lookup_per_batch']}\n"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
