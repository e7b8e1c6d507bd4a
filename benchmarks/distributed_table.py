"""Worker of ``benchmarks/distributed.py --sections table`` (run under torchrun).

One embedding table of ``--rows`` x 32, built on the meta device so no process ever holds it
whole, sharded row-wise over the ranks by ``recsys.training.distributed`` and trained on random
bags of ids for ``--steps`` steps (Adam on dense gradients, or with ``--fused`` a fused optimizer
that updates only the rows looked up, inside the backward pass). Rank 0 writes each rank's peak
resident memory and the lookup rate to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from recsys.models.embeddings import EntityBags
from recsys.training import distributed as sharding

BATCH, BAG = 4096, 8


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--out", required=True)
    p.add_argument("--fused", default="none", help="a fused optimizer, e.g. exact_rowwise_adagrad")
    a = p.parse_args()
    torch.set_num_threads(1)
    config = sharding.DistributedConfig(enabled=True, sharding="row_wise", fused_optimizer=a.fused)
    rank, world = sharding.start(config)
    model = torch.nn.Module()
    model.tables = EntityBags(sizes={"item": a.rows}, dim=32, device="meta")
    model.head = torch.nn.Linear(32, 1, device="meta")
    sharded = sharding.ShardedModel(model, config, lr=1e-3)
    with torch.no_grad():  # the meta-built dense layer gets values (the table's shards have them)
        sharded.module.head.to_empty(device="cpu")
        sharded.module.head.reset_parameters()
    opt = torch.optim.Adam(sharded.dense_parameters().values(), lr=1e-3)
    gen = torch.Generator().manual_seed(rank)
    seconds = 0.0
    for step in range(a.steps):
        ids = torch.randint(1, a.rows, (BATCH, BAG), generator=gen)
        t0 = time.perf_counter()
        (pooled,) = sharded.module.tables([("item", ids, None)])
        loss = sharded.module.head(pooled).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sharded.average_gradients()
        opt.step()
        if step >= 3:  # the first steps allocate Adam's moments
            seconds += time.perf_counter() - t0
    timed = a.steps - 3
    mine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [None] * world
    torch.distributed.all_gather_object(rows, mine)
    if rank == 0:
        out = {
            "optimizer": "Adam (dense kernel)" if a.fused == "none" else f"fused {a.fused}",
            "world": world,
            "peak_rss_mib": rows,
            "step_ms": 1000 * seconds / timed,
            "lookups_per_second_per_rank": BATCH * BAG * timed / seconds,
        }
        with open(a.out, "w") as f:
            json.dump(out, f)
    sharding.stop()


if __name__ == "__main__":
    main()
