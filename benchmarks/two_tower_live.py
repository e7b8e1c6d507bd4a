"""The two-tower's live-negative loss step: each candidate embedded once vs every pair embedded.

    python benchmarks/two_tower_live.py --preset medium --batches 30 --rounds 3

With ``negatives=live`` each row ranks its target among everything on air at its time. The
loss (``recsys.tasks.two_tower.live_softmax``) sends through the candidate tower only the
entities some row of the batch may rank, each once: a room once per distinct product it showed
at the batch's times. The reference here is the direct formulation: the whole catalogue of
products, and one room embedding per (row, live room) pair. Both run on the same batches of the
pipeline's two-tower setting (``model=two_tower_live``, batch 512, one thread), forward and
backward, in alternating rounds, so machine load falls on both alike; their losses are compared
in eval mode (equal up to float rounding). Writes ``benchmarks/results/two_tower_live_<preset>``
``.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from recsys.cli.pipeline import compose_job
from recsys.inputs.two_tower import training_examples
from recsys.recommenders.build import build_recommender
from recsys.recommenders.data import DataConfig, load_sequential_data
from recsys.recommenders.sequential import horizon
from recsys.tasks.two_tower import live_softmax

RESULTS = Path(__file__).resolve().parent / "results"


def every_pair(model, batch) -> torch.Tensor:
    """The reference: every product, and a room embedding per (row, live room) pair."""
    head, allowed = batch.head, batch.allowed
    ids = torch.arange(allowed.shape[1])
    q = model.query(batch, head).float() / model.temperature
    bonus = model.pair_bonus(batch, head, ids)  # (B, n)
    if batch.allowed_showing is None:
        logits = q @ model.candidates(head, ids).float().t() + bonus
    else:
        rows, entity = allowed.nonzero(as_tuple=True)
        c = model.candidates(head, entity, batch.allowed_showing[rows, entity]).float()
        pair = (q[rows] * c).sum(-1) + bonus[rows, entity]
        logits = torch.full(allowed.shape, float("-inf")).index_put((rows, entity), pair)
    return F.cross_entropy(logits.masked_fill(~allowed, float("-inf")), batch.target)


def setting(preset: str):
    """(model, dataset) of the pipeline's two-tower on the preset's training split."""
    overrides = ["model=two_tower_live", f"data=synthetic-{preset}", "trainer.batch_size=512",
                 "run_dir=/tmp/two-tower-live-bench"]  # fmt: skip
    cfg = compose_job("train", overrides)
    cfg = OmegaConf.to_container(cfg, resolve=True)
    data = load_sequential_data(DataConfig(**cfg["data"]))
    rec = build_recommender(cfg, data, run_dir=Path(cfg["run_dir"]))
    split = data.train_split
    model = rec.build(split.train, item_features=split.item_features)
    log = rec.context.log.until(horizon(split.train))
    examples = training_examples(log, model.heads, world=rec.world, fresh_only=rec.fresh_only)
    sizes = {"product": model.config.n_products, "streamer": model.config.n_streamers}
    dataset = rec._dataset(examples, rec.queries(), sizes)
    return model, dataset


def step_seconds(fn, model, batches) -> float:
    t0 = time.perf_counter()
    for b in batches:
        model.zero_grad(set_to_none=True)
        fn(model, b).backward()
    return time.perf_counter() - t0


def run(preset: str, n_batches: int, rounds: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, dataset = setting(preset)
    order = dataset.order(seed=0, epoch=0, batch_size=512)
    heads = {}
    for rows in order:  # the first batches of each head, as an epoch meets them
        b = dataset.batch(rows)
        heads.setdefault(b.head, [])
        if len(heads[b.head]) < n_batches:
            heads[b.head].append(b)
        if all(len(v) == n_batches for v in heads.values()) and len(heads) == len(model.heads):
            break
    model.eval()
    with torch.no_grad():
        gap = max(abs(live_softmax(model, b).item() - every_pair(model, b).item())
                  for v in heads.values() for b in v)  # fmt: skip
    model.train()
    out = {"preset": preset, "batch_size": 512, "threads": threads, "rounds": rounds,
           "max_abs_loss_gap_eval": gap, "heads": {}}  # fmt: skip
    for head, batches in heads.items():
        a = b_ = 0.0
        for _ in range(rounds):
            a += step_seconds(every_pair, model, batches)
            b_ += step_seconds(live_softmax, model, batches)
        sizes = shapes(batches)
        out["heads"][head] = {
            "batches": len(batches), **sizes,
            "every_pair_s_per_step": a / (rounds * len(batches)),
            "live_softmax_s_per_step": b_ / (rounds * len(batches)),
            "speedup": a / b_,
        }  # fmt: skip
    return out


def shapes(batches) -> dict:
    """Mean tower rows per batch: the reference's and the deduplicated ones."""
    ref = new = 0
    for b in batches:
        a = b.allowed
        if b.allowed_showing is None:
            ref, new = ref + a.shape[1], new + int(a.any(0).sum())
        else:
            r, e = a.nonzero(as_tuple=True)
            key = e * (int(b.allowed_showing.max()) + 1) + b.allowed_showing[r, e]
            ref, new = ref + len(r), new + len(torch.unique(key))
    return {"tower_rows_every_pair": ref / len(batches), "tower_rows_live": new / len(batches)}


def report(res: dict, command: str) -> str:
    lines = [f"# Two-tower live-negative step: {res['preset']}", "", f"`{command}`", "",
             f"Batch {res['batch_size']}, {res['threads']} thread(s), {res['rounds']} alternating "
             f"rounds; largest loss gap in eval mode {res['max_abs_loss_gap_eval']:.2e}.", "",
             "| head | batches | tower rows, every pair | tower rows, live | s/step every pair "
             "| s/step live | speed-up |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for head, h in res["heads"].items():
        lines.append(f"| {head} | {h['batches']} | {h['tower_rows_every_pair']:.0f} | "
                     f"{h['tower_rows_live']:.0f} | {h['every_pair_s_per_step']:.3f} | "
                     f"{h['live_softmax_s_per_step']:.3f} | {h['speedup']:.2f}x |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--batches", type=int, default=20, help="batches per head")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-dir", default=str(RESULTS))
    a = p.parse_args()
    res = run(a.preset, a.batches, a.rounds, a.threads)
    command = (f"python benchmarks/two_tower_live.py --preset {a.preset} --batches {a.batches} "
               f"--rounds {a.rounds} --threads {a.threads}")  # fmt: skip
    res["command"] = command
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"two_tower_live_{a.preset}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"two_tower_live_{a.preset}.md").write_text(report(res, command))
    print(report(res, command))


if __name__ == "__main__":
    main()
