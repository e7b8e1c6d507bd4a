"""Throughput and peak memory of the synthetic-world generator per preset.

    python benchmarks/simulate.py [--presets tiny small medium large] [--seed 0] [--out-dir DIR]

Each preset runs in a fresh Python process so its peak resident memory (``ru_maxrss``) is its
own. Results go to ``benchmarks/results/simulate.json`` and ``simulate.md``; the generated
worlds are deleted afterwards unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def run_child(preset: str, seed: int, out_dir: Path) -> dict:
    """Generate one world in this process and measure it."""
    from recsys.simulation import SimConfig, simulate

    began = time.perf_counter()
    manifest = simulate(SimConfig.from_preset(preset, seed=seed), out_dir, overwrite=True)
    seconds = time.perf_counter() - began
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    return {
        "preset": preset,
        "seed": seed,
        "events": manifest["counts"]["events"],
        "users": manifest["counts"]["users"],
        "days": manifest["event_parts"],
        "seconds": round(seconds, 2),
        "events_per_s": round(manifest["counts"]["events"] / seconds),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "disk_mib": round(size / 2**20, 1),
    }


def run_preset(preset: str, seed: int, root: Path, keep: bool) -> dict:
    out = root / f"{preset}-seed{seed}"
    cmd = [sys.executable, __file__, "--child", preset, "--seed", str(seed), "--out-dir", str(out)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
    head = "| preset | users | days | events | seconds | events/s | peak RSS (MiB) | disk (MiB) |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['users']:,} | {r['days']} | {r['events']:,} | {r['seconds']} "
            f"| {r['events_per_s']:,} | {r['peak_rss_mib']} | {r['disk_mib']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "medium"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated worlds")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args.seed, args.out_dir)))
        return
    root = args.out_dir or Path(tempfile.mkdtemp(prefix="recsys-simulate-"))
    rows = []
    for preset in args.presets:
        rows.append(run_preset(preset, args.seed, root, args.keep))
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    table = markdown(rows)
    print(table)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    command = "python benchmarks/simulate.py " + " ".join(sys.argv[1:] if argv is None else argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"command": command, "machine": machine, "runs": rows}
    (RESULTS / "simulate.json").write_text(json.dumps(record, indent=2) + "\n")
    note = "Seconds: wall time of `simulate()` in a fresh process, imports excluded."
    (RESULTS / "simulate.md").write_text(
        f"# Synthetic world generation\n\n`{command}`\n\nMachine: {machine}. {note}\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
