"""Training throughput of the sequential model on one device: the Beauty setting, CPU or CUDA.

    python benchmarks/train_device.py --device cpu --threads 2 --label cpu-2threads
    python benchmarks/train_device.py --device cuda --label h100

Trains ``recsys-train model=sasrec data=amazon-beauty-bert4rec`` (maxlen 50, dim 64, 2 blocks,
full-catalogue cross-entropy, dropout 0.2; bfloat16 autocast on CUDA) for ``--epochs`` epochs at
each batch size through ``recsys.recommenders.train`` (the CLI's own function), then validates and
tests under the full-ranking protocol. Reported per run: training sequences per second and
seconds (steps only), the fit's seconds (validation, checkpoint selection and device warm-up
included), test NDCG@10 / HR@10 after those epochs, and peak memory (GPU:
torch's peak allocation; CPU: peak resident set). Each device writes
``benchmarks/results/train_device_<label>.json``; ``train_device.md`` tabulates every label
found there, so CPU and GPU figures sit side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import tempfile
from pathlib import Path

import torch

from recsys.cli.pipeline import compose_job
from recsys.recommenders import train

RESULTS = Path(__file__).resolve().parent / "results"


def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def run_one(args: argparse.Namespace, batch_size: int, run_dir: Path) -> dict:
    overrides = [
        "model=sasrec",
        f"data={args.dataset}",
        f"run_dir={run_dir}",
        f"trainer.device={args.device}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.batch_size={batch_size}",
        f"trainer.num_threads={args.threads}",
        "trainer.progress=false",
        "trainer.checkpoint=false",
    ]
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    metrics = train(compose_job("train", overrides))
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if args.device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    row = {
        "batch_size": batch_size,
        "epochs": metrics["train/epochs"],
        "train_seconds": metrics["train/train_seconds"],
        "fit_seconds": metrics["train/seconds"],
        "sequences_per_second": metrics["train/sequences_per_second"],
        "test_ndcg@10": metrics.get("test/full/ndcg@10", metrics.get("test/product/full/ndcg@10")),
        "test_hr@10": metrics.get("test/full/hr@10", metrics.get("test/product/full/hr@10")),
        "peak_memory_mib": round(peak, 1),
    }
    print(json.dumps(row), flush=True)
    return row


def _local_path(given: list[str], i: int) -> bool:
    """Whether ``given[i]`` is a machine-local path option or its value (left out of the record)."""
    local = ("--out-dir", "--data-dir")
    return given[i] in local or (i > 0 and given[i - 1] in local)


def markdown(reports: list[dict]) -> str:
    head = ["label", "device", "batch", "epochs", "sequences/s", "train s", "fit s",
            "test NDCG@10", "test HR@10", "peak MiB"]  # fmt: skip
    lines = ["# train_device\n", "Sequential model, Beauty setting, one device per row.\n"]
    for r in reports:
        lines.append(f"- {r['label']}: `{r['command']}` (torch {r['torch']}; {r['note']})")
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in reports:
        for row in r["runs"]:
            lines.append(
                f"| {r['label']} | {r['device_name']} | {row['batch_size']} | {row['epochs']} | "
                f"{row['sequences_per_second']:.0f} | {row['train_seconds']:.1f} | "
                f"{row['fit_seconds']:.1f} | "
                f"{row['test_ndcg@10']:.4f} | {row['test_hr@10']:.4f} | "
                f"{row['peak_memory_mib']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--label", required=True, help="names the results file")
    p.add_argument("--dataset", default="amazon-beauty-bert4rec")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128])
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads; 0: torch's")
    p.add_argument("--data-dir", default=None, help="shared data folder ($RECSYS_DATA_DIR)")
    p.add_argument(
        "--fbgemm-cpu-fallback",
        action="store_true",
        help="CUDA with only fbgemm-gpu-cpu installed: see benchmarks/gpu/fbgemm_cuda_fallback.py",
    )
    p.add_argument("--note", default="", help="how the stack was installed, for the table")
    p.add_argument("--out-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    if args.fbgemm_cpu_fallback:
        sys.path.insert(0, str(Path(__file__).resolve().parent / "gpu"))
        from fbgemm_cuda_fallback import install

        print("fbgemm CUDA fallbacks (added, refused):", install(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_one(args, b, Path(tmp) / f"b{b}") for b in args.batch_sizes]
    given = list(argv if argv is not None else sys.argv[1:])
    kept = [a for i, a in enumerate(given) if not _local_path(given, i)]
    report = {
        "label": args.label,
        "command": "python benchmarks/train_device.py " + shlex.join(kept),
        "device_name": _device_name(args.device),
        "torch": torch.__version__,
        "note": args.note,
        "runs": runs,
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"train_device_{args.label}.json").write_text(json.dumps(report, indent=2) + "\n")
    reports = [json.loads(f.read_text()) for f in sorted(out.glob("train_device_*.json"))]
    (out / "train_device.md").write_text(markdown(reports))
    print(markdown(reports))
    return report


if __name__ == "__main__":
    main()
