"""Sharded training on CPU: equivalence, resharding, kill/resume and scale on 2 gloo ranks.

    python benchmarks/distributed.py                       # every section
    python benchmarks/distributed.py --sections scale --scale-preset large --scale-seconds 180

Sections (each ``recsys-train`` run is a fresh ``torchrun`` or ``python -m`` process):

- ``equivalence``: per family (``sasrec``, ``two_tower``) and sharding type (every table the
  same type), one epoch on the tiny world with dropout off at 2 ranks, against the plain
  single-process trainer and against one process through the same sharded tables (world size
  1: the same embedding kernels); the largest absolute difference over the validation metrics.
- ``reshard``: 2 ranks -> 1 process and 1 -> 2 (one epoch, then resumed for a second) against
  an uninterrupted 2-rank run; the 2-rank DCP checkpoint read whole in one process against the
  ``best.pt`` the single-process tools read; ``recsys-index`` on that ``best.pt``.
- ``kill``: SIGKILL of rank 1 mid-epoch (after a mid-epoch checkpoint), then ``resume=true``,
  against an uninterrupted run.
- ``scale``: the sequential model on a preset for a fixed training time, 1 process (plain
  trainer, 1 and 2 threads) and 2 ranks (1 thread each): sequences/s, per rank, peak memory per
  rank, scaling efficiency; load average recorded.
- ``stream``: 2 ranks with every rank's training windows in memory against each rank streaming
  its own row groups (``benchmarks/distributed_stream.py``): peak memory per rank.
- ``table``: one row-wise table of ``--table-rows`` x 32 trained on random ids through the
  sharding wrapper alone, at 1 and 2 ranks: peak memory per rank and lookups/s.

Writes ``benchmarks/results/distributed.json`` (merged section by section) and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from distributed_equivalence import equivalence, headline, tiny, valid_diff
from distributed_report import index_lines, markdown
from distributed_stream import stream

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PY = sys.executable


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(overrides: list[str], run_dir: Path, nproc: int) -> list[str]:
    launch = (
        [PY, "-m", "recsys.cli.train"]
        if nproc == 0
        else [
            PY,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1",
            f"--master_port={_port()}",
            "-m",
            "recsys.cli.train",
        ]
    )
    return [*launch, *overrides, f"hydra.run.dir={run_dir}"]


def train(overrides: list[str], run_dir: Path, nproc: int = 0) -> dict:
    """One run (nproc 0: plain ``python -m``); its metrics.json plus wall seconds."""
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = command(overrides, run_dir, nproc)
    peak = run_dir / "peak_rss_kib.txt"  # one process: GNU time's maximum resident set size
    if nproc == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        cmd = ["/usr/bin/time", "-f", "%M", "-o", str(peak), *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    out = json.loads((run_dir / "metrics.json").read_text())
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    ranks = run_dir / "ranks.json"
    out["ranks"] = json.loads(ranks.read_text()) if ranks.exists() else None
    if nproc == 0 and peak.exists():
        out["ranks"] = [{"rank": 0, "peak_rss_mib": int(peak.read_text().split()[-1]) / 1024}]
    return out


def reshard(work: Path) -> dict:
    two = tiny("sasrec", "trainer.max_epochs=2")
    full = train(two, work / "uninterrupted", nproc=2)
    out = {"uninterrupted": headline(full)}
    train(tiny("sasrec"), work / "two-one", nproc=2)
    resumed = train([*two, "trainer.distributed.micro_batches=2", "resume=true"], work / "two-one")
    out["2_to_1"] = {"diff": valid_diff(resumed, full), "metrics": headline(resumed)}
    train(tiny("sasrec", "trainer.distributed.micro_batches=2"), work / "one-two")
    resumed = train([*two, "resume=true"], work / "one-two", nproc=2)
    out["1_to_2"] = {"diff": valid_diff(resumed, full), "metrics": headline(resumed)}
    out["dcp_whole_vs_best"] = _dcp_whole(work / "uninterrupted")
    index = subprocess.run(
        [
            PY,
            "-m",
            "recsys.cli.index",
            f"checkpoint={work / 'uninterrupted' / 'best.pt'}",
            f"hydra.run.dir={work / 'index'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    out["recsys_index_on_2_rank_best"] = {
        "returncode": index.returncode,
        # "<head>: <n> x <dim> <factory>", without the machine's folders
        "output": [ln.split(" -> ")[0] for ln in index.stdout.splitlines() if " x " in ln],
    }
    return out


def _dcp_whole(run: Path) -> dict:
    """The 2-rank DCP checkpoint read whole in this process against best.pt (both epoch 2)."""
    import torch

    from recsys.recommenders.restore import restore
    from recsys.training.distributed_checkpoint import load_full_checkpoint

    restored = restore(run / "best.pt")
    model = restored.recommender.model
    saved = load_full_checkpoint(run / "checkpoint_dcp", model)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    equal = all(torch.equal(saved[k], v) for k, v in best.items())
    split = restored.data.train_split
    users = split.valid.user[:200]
    before = restored.recommender.score(users, split.train)
    model.load_state_dict(saved)
    after = restored.recommender.score(users, split.train)
    return {
        "tensors_equal": equal,
        "n_tensors": len(best),
        "users_scored": len(users),
        "max_abs_score_diff": float(abs(after - before).max()),
    }


def kill(work: Path) -> dict:
    args = tiny(
        "sasrec",
        "trainer.max_epochs=3",
        "trainer.batch_size=16",
        "trainer.checkpoint_every_steps=4",
    )
    full = train(args, work / "uninterrupted", nproc=2)
    run = work / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command(args, run, 2),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    at = _wait_mid_epoch(run / "checkpoint_dcp" / "meta.pt", proc)
    victim = _rank_pid(proc.pid, 1)
    os.kill(victim, signal.SIGKILL)
    code = proc.wait(timeout=120)
    resumed = train([*args, "resume=true"], run, nproc=2)
    return {
        "killed_at": at,
        "torchrun_exit": code,
        "diff": valid_diff(resumed, full),
        "uninterrupted": headline(full),
        "resumed": headline(resumed),
        "command": "torchrun --nproc_per_node=2 -m recsys.cli.train " + " ".join(args),
    }


def _wait_mid_epoch(meta: Path, proc: subprocess.Popen) -> dict:
    import torch

    while proc.poll() is None:
        if meta.exists():
            try:
                state = torch.load(meta, weights_only=False)["train_state"]
            except (OSError, EOFError, RuntimeError):
                state = None
            if state and state["epoch"] >= 1 and state["step"] > 0:
                return {"epoch": state["epoch"], "step": state["step"]}
        time.sleep(0.2)
    raise RuntimeError("the run ended before a mid-epoch checkpoint")


def _rank_pid(root: int, rank: int) -> int:
    """The pid of ``rank`` among torchrun's children (read from their environment)."""
    for child in Path(f"/proc/{root}/task/{root}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(child)
    raise RuntimeError(f"no rank {rank} under pid {root}")


def world_path(preset: str) -> Path:
    """The simulated world of ``preset`` (seed 0), generated into the cache when missing."""
    from recsys.datasets import ensure_world

    return Path(ensure_world(preset, 0, None))


def scale(work: Path, preset: str, seconds: float, input_mode: str = "streamed") -> dict:
    """The sequential model for ``seconds`` of training: one plain process (1 and 2 threads)
    against 2 ranks whose training rows come from ``input_mode`` (streamed: only rank 0 loads
    the world)."""
    base = [
        "model=sasrec",
        "data=world",
        f"data.path={world_path(preset)}",
        f"data.name={preset}",
        "trainer.max_epochs=1",
        "eval_stages=[]",
        f"+trainer.max_seconds={seconds}",
        "trainer.progress=false",
    ]
    rows = {}
    for name, extra, nproc in (
        ("1 process, 1 thread", ["trainer.num_threads=1"], 0),
        ("1 process, 2 threads", ["trainer.num_threads=2"], 0),
        ("2 ranks x 1 thread", ["trainer=distributed",
                                f"trainer.distributed.input.mode={input_mode}"], 2),
    ):  # fmt: skip
        load_before = os.getloadavg()
        m = train([*base, *extra], work / name.replace(" ", "_").replace(",", ""), nproc)
        rows[name] = {
            "sequences_per_second": m["train/sequences_per_second"],
            "per_rank": m["train/sequences_per_second"] / max(nproc, 1),
            "train_seconds": m["train/train_seconds"],
            "wall_seconds": m["wall_seconds"],
            "ranks": m["ranks"],
            "load_before": load_before,
            "load_after": os.getloadavg(),
        }
        print(name, rows[name], flush=True)
    one = rows["1 process, 1 thread"]["sequences_per_second"]
    two = rows["2 ranks x 1 thread"]["sequences_per_second"]
    manifest = world_path(preset) / "manifest.json"
    counts = json.loads(manifest.read_text())["counts"] if manifest.exists() else {}
    return {
        "preset": preset,
        "world_counts": counts,
        "seconds": seconds,
        "input_mode": input_mode,
        "rows": rows,
        "scaling_efficiency_1_to_2": two / (2 * one),
        "command": "torchrun --nproc_per_node=2 -m recsys.cli.train trainer=distributed "
        + " ".join(base)
        + f" trainer.distributed.input.mode={input_mode}",
    }


def table(work: Path, rows: int, steps: int) -> dict:
    out = {"rows": rows, "dim": 32, "steps": steps, "runs": []}
    for fused in ("none", "exact_rowwise_adagrad"):
        for nproc in (1, 2):
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            result = work / f"table-{fused}-{nproc}.json"
            worker = str(ROOT / "benchmarks" / "distributed_table.py")
            cmd = [
                PY,
                "-m",
                "torch.distributed.run",
                f"--nproc_per_node={nproc}",
                f"--master_port={_port()}",
                worker,
                f"--rows={rows}",
                f"--steps={steps}",
                f"--fused={fused}",
                f"--out={result}",
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-3000:])
            out["runs"].append({**json.loads(result.read_text()), "load": os.getloadavg()})
            print(out["runs"][-1], flush=True)
    return out


def _write(path: Path, results: dict) -> None:
    """The JSON and markdown results, without this machine's folders."""
    index = results.get("reshard", {}).get("recsys_index_on_2_rank_best")
    if index:
        index["output"] = index_lines(index["output"]).split("; ")
    text = json.dumps(results, indent=2).replace(str(Path.home()), "~")
    path.write_text(text + "\n")
    (RESULTS / "distributed.md").write_text(markdown(json.loads(text)) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default="equivalence,reshard,kill,scale,stream,table")
    p.add_argument("--work", type=Path, default=Path("/tmp/recsys-distributed-bench"))
    p.add_argument("--scale-preset", default="large")
    p.add_argument("--scale-seconds", type=float, default=120.0)
    p.add_argument("--scale-input", choices=("memory", "streamed"), default="streamed")
    p.add_argument("--stream-preset", default="medium")
    p.add_argument("--stream-seconds", type=float, default=60.0)
    p.add_argument("--stream-chunk-mib", type=float, default=64.0)
    p.add_argument("--table-rows", type=int, default=10_000_000)
    p.add_argument("--table-steps", type=int, default=30)
    p.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    a = p.parse_args()
    path = RESULTS / "distributed.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if a.markdown_only:
        _write(path, results)
        return
    results["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    for section in a.sections.split(","):
        work = a.work / section
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if section == "equivalence":
            results[section] = equivalence(work, train)
        elif section == "reshard":
            results[section] = reshard(work)
        elif section == "kill":
            results[section] = kill(work)
        elif section == "scale":
            results[section] = scale(work, a.scale_preset, a.scale_seconds, a.scale_input)
        elif section == "stream":
            results[section] = stream(work, a.stream_preset, a.stream_seconds, a.stream_chunk_mib,
                                      train=train, world=world_path(a.stream_preset))  # fmt: skip
        elif section == "table":
            results[section] = table(work, a.table_rows, a.table_steps)
        else:
            raise SystemExit(f"unknown section {section!r}")
        results[section]["section_seconds"] = round(time.perf_counter() - t0, 1)
        results[section]["load_average_after"] = os.getloadavg()
        _write(path, results)
        print(f"{section}: done in {results[section]['section_seconds']} s", flush=True)


if __name__ == "__main__":
    main()
