"""Training steps of several models timed in turns, so load from other processes on a shared
machine falls on all of them alike.

Each round runs one step of every model, in a fixed order; a step's wall time and the process's
CPU time (``time.process_time``: what the step itself computed, whatever else the machine is
doing) are recorded. Throughput is sequences per second of either clock, from the rounds after
the warm-up ones; ratios of the CPU-time figures are the load-robust comparison.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np

Step = Callable[[], int]  # runs one training step, returns the sequences it trained on


def interleaved_throughput(
    steps: Mapping[str, Step], *, rounds: int, warmup: int = 2
) -> dict[str, dict[str, float]]:
    """Per model: sequences per wall second and per CPU second, steps timed and their median."""
    if rounds <= warmup:
        raise ValueError(f"rounds ({rounds}) must exceed warmup ({warmup})")
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    seqs = {name: [] for name in steps}
    for r in range(rounds):
        for name, step in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            n = step()
            if r >= warmup:
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
                seqs[name].append(n)
    return {
        name: {
            "sequences_per_wall_second": round(sum(seqs[name]) / sum(wall[name]), 1),
            "sequences_per_cpu_second": round(sum(seqs[name]) / sum(cpu[name]), 1),
            "median_step_cpu_seconds": round(float(np.median(cpu[name])), 4),
            "steps_timed": len(cpu[name]),
        }
        for name in steps
    }
