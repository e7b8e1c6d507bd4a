"""The ``equivalence`` section of ``benchmarks/distributed.py``, and the tiny-world runs the
other sections build on: 2 gloo ranks against the plain single-process trainer and against one
process through the same sharded tables, per model variant and sharding type, one epoch on the
tiny world; the largest absolute difference over the validation metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

SHARDINGS = ("table_wise", "row_wise", "column_wise", "data_parallel")
# (label, model, extra overrides). Dropout at the models' defaults, its masks drawn per row of
# the whole batch (trainer.row_keyed_dropout), or off; the two-tower's history bags summed by
# PyTorch (portable_pooling: the same sums sharded or not) or in the lookup kernels (default).
KEYED = "trainer.row_keyed_dropout=true"
VARIANTS = (
    ("sasrec, dropout 0.2 row-keyed", "sasrec", ("model.dropout=0.2", KEYED)),
    ("sasrec, dropout 0.2 per rank", "sasrec", ("model.dropout=0.2",)),
    ("two_tower, portable pooling, dropout 0.3 row-keyed", "two_tower",
     ("model.portable_pooling=true", "model.dropout=0.3", KEYED)),
    ("two_tower, kernel pooling, dropout off", "two_tower", ("model.dropout=0",)),
)  # fmt: skip


def tiny(family: str, *extra: str, distributed: bool = True) -> list[str]:
    """One epoch on the tiny world; dropout off unless ``extra`` sets it."""
    dropout = [] if any(e.startswith("model.dropout=") for e in extra) else ["model.dropout=0"]
    base = [
        f"model={family}",
        *dropout,
        "data=synthetic-tiny",
        "trainer.max_epochs=1",
        "trainer.progress=false",
        "eval_stages=[valid]",
        *extra,
    ]
    return ["trainer=distributed", *base] if distributed else ["trainer.num_threads=1", *base]


def valid_diff(a: dict, b: dict, coverage: bool = False) -> float:
    """Largest absolute difference over the validation ranking metrics (HR, NDCG, MRR), or with
    ``coverage`` over the catalogue coverage (a count of products: steps of 1/catalogue)."""
    keys = [k for k in a if k.startswith("valid/") and ("coverage" in k) == coverage]
    return max(abs(a[k] - b[k]) for k in keys)


def headline(m: dict) -> dict:
    return {k: round(v, 5) for k, v in m.items() if k.startswith("valid/") and "ndcg@10" in k}


# -- sections ------------------------------------------------------------------------------------


def equivalence(work: Path, train: Callable[..., dict]) -> dict:
    """Per family and sharding type: 2 ranks against the plain single-process trainer, and
    against one process through the same sharded tables (world size 1)."""
    rows = []
    for label, family, extra in VARIANTS:
        name = label.replace(", ", "-").replace(" ", "_").replace(".", "")
        plain = train(tiny(family, *extra, distributed=False), work / f"{name}-plain")
        for kind in SHARDINGS:
            sharded = f"trainer.distributed.sharding={kind}"
            one = train(tiny(family, *extra, sharded), work / f"{name}-{kind}-one")
            two = train(tiny(family, *extra, sharded), work / f"{name}-{kind}", nproc=2)
            rows.append(
                {
                    "family": label,
                    "sharding": kind,
                    "two_ranks": headline(two),
                    "diff_vs_plain_one_process": valid_diff(two, plain),
                    "coverage_diff_vs_plain_one_process": valid_diff(two, plain, coverage=True),
                    "diff_vs_one_process_sharded": valid_diff(two, one),
                    "coverage_diff_vs_one_process_sharded": valid_diff(two, one, coverage=True),
                    "valid_targets": {
                        k.split("/")[1]: v
                        for k, v in two.items()
                        if k.startswith("valid/") and k.endswith("live/n_targets")
                    },
                    "wall_seconds_2_ranks": two["wall_seconds"],
                }
            )
            print(rows[-1], flush=True)
    _, family, extra = VARIANTS[0]
    cmd = "torchrun --nproc_per_node=2 -m recsys.cli.train " + " ".join(tiny(family, *extra))
    return {
        "rows": rows,
        "command": cmd + " trainer.distributed.sharding=<type>",
        "plain_command": "python -m recsys.cli.train "
        + " ".join(tiny(family, *extra, distributed=False)),
    }
