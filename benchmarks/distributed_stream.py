"""The ``stream`` section of ``benchmarks/distributed.py``: where ranks get their training rows.

Two ranks train the sequential model on a preset for a fixed time, once with every rank building
all training windows in memory (``trainer.distributed.input.mode=memory``, the default) and once
with rank 0 writing them to ``train_windows.parquet`` and each rank reading its own row groups
in chunks (``mode=streamed``, ``chunk_mib`` as given; only rank 0 loads the world then).
Recorded per rank: peak RSS (the whole process), steps, and for the streamed run the row
groups, rows and most window rows held at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

MODES = ("memory", "streamed")


def stream(
    work: Path,
    preset: str,
    seconds: float,
    chunk_mib: float,
    *,
    train: Callable[[list[str], Path, int], dict],
    world: Path,
) -> dict:
    base = [
        "trainer=distributed",
        "model=sasrec",
        "data=world",
        f"data.path={world}",
        f"data.name={preset}",
        "trainer.max_epochs=1",
        "eval_stages=[]",
        f"+trainer.max_seconds={seconds}",
        "trainer.progress=false",
        f"trainer.distributed.input.chunk_mib={chunk_mib}",
    ]
    rows = {}
    for mode in MODES:
        load_before = os.getloadavg()
        m = train([*base, f"trainer.distributed.input.mode={mode}"], work / mode, 2)
        rows[mode] = {
            "sequences_per_second": m["train/sequences_per_second"],
            "train_seconds": m["train/train_seconds"],
            "wall_seconds": m["wall_seconds"],
            "ranks": m["ranks"],
            "load_before": load_before,
            "load_after": os.getloadavg(),
        }
        print(mode, rows[mode], flush=True)
    return {
        "preset": preset,
        "seconds": seconds,
        "chunk_mib": chunk_mib,
        "rows": rows,
        "command": "torchrun --nproc_per_node=2 -m recsys.cli.train "
        + " ".join(base)
        + " trainer.distributed.input.mode={memory,streamed}",
    }


def stream_md(s: dict) -> list[str]:
    lines = [
        f"## Input: in memory on every rank vs streamed per rank (`{s['preset']}`, "
        f"{s['seconds']:.0f} s of training, 2 ranks)",
        "",
        f"`{s['command']}`",
        "",
        "| input | peak RSS per rank (MiB) | sequences/s | rows read per rank | "
        "most window rows held (chunk) | load avg before -> after |",
        "|---|---|---:|---|---|---|",
    ]
    for mode, row in s["rows"].items():
        rss = ", ".join(f"{x['peak_rss_mib']:.0f}" for x in row["ranks"])
        inputs = [x.get("input") for x in row["ranks"]]
        read = ", ".join(f"{x['rows']:,}" for x in inputs) if all(inputs) else "all, split"
        held = (
            ", ".join(f"{x['peak_rows']:,} ({x['chunk_rows']:,})" for x in inputs)
            if all(inputs)
            else "-"
        )
        load = f"{row['load_before'][0]:.1f} -> {row['load_after'][0]:.1f}"
        lines.append(
            f"| {mode} | {rss} | {row['sequences_per_second']:.0f} | {read} | {held} | {load} |"
        )
    lines += [
        "",
        "Peak RSS is the whole process. In memory mode every rank loads the world and builds "
        "every window; streamed, only rank 0 loads the world (it validates and writes the "
        "window file) and the other ranks hold the model, rank 0's plan and chunks of their "
        "own windows. Rank 0's peak is the world's preparation, which streaming leaves as it "
        "is. Rows held: one row group read at a time plus less than a batch carried over, "
        "never more than the chunk (in parentheses, from `chunk_mib` and the row width).",
        "",
    ]
    return lines
