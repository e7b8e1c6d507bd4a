"""Quality benchmark: tuned recommenders on one dataset under one protocol, side by side.

    python benchmarks/quality.py --dataset amazon-beauty-bert4rec --protocol full
    python benchmarks/quality.py --dataset amazon-games-sasrec --protocol sampled
    python benchmarks/quality.py --dataset synthetic-small --target product --protocol live
    python benchmarks/quality.py --data-path my/ratings.csv --columns user=uid item=sku time=ts
    python benchmarks/quality.py --data-path worlds/shop --protocol live   (a recsys-ingest folder)
    python benchmarks/quality.py --dataset ml-100k --models popularity item_knn ease als bpr \
        sasrec two_tower --sequential-config configs/sasrec_public.yaml --seeds 0 1 2

Writes ``benchmarks/results/quality_<dataset>_<protocol>.json`` (per model: test and validation
metrics, chosen hyperparameters and the tuning grid, fit and recommend seconds, peak memory, a
paired test against the best model; trained models: every seed's test metric, the mean and
spread, and a paired test of the seeds' mean against the best baseline) and the markdown table
beside it, and prints the table. ``--sequential-config`` reads the sequential model's declared
default and validation grid (``configs/sasrec_public.yaml``), with the per-dataset overrides
it names applied and recorded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch
import yaml
from harness.command import recorded_command
from harness.references import references_for
from harness.split_notes import check_stages, split_notes
from threadpoolctl import threadpool_limits

from recsys.data.splits import fold_unsampled_validation, new_item_targets
from recsys.data.tables import load_tables
from recsys.datasets import INTERACTION_FORMATS, make_split
from recsys.evaluation.combine import combine_by_name, result_from_json
from recsys.evaluation.selection import (
    QualitySettings,
    compare_results,
    markdown_table,
    run_quality,
)
from recsys.inputs.tokens import world_context
from recsys.recommenders.candidates import (
    DEFAULT_MODELS,
    benchmark_context,
    build_candidates,
    quick_grids,
)
from recsys.recommenders.registry import MODELS

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    _data_arguments(p)
    _model_arguments(p)
    _apart_arguments(p)
    args = p.parse_args(argv)
    if not args.dataset and not args.data_path:
        p.error("one of --dataset or --data-path is required")
    if not args.models and not args.include:
        p.error("no --models to run and no --include to combine")
    if args.data_path:
        args.data_format = data_format(Path(args.data_path), args.data_format)
        # A label of its own, so a file given by path never overwrites a registered run's results.
        args.dataset = args.dataset or f"file-{Path(args.data_path).stem}"
    return args


def _data_arguments(p: argparse.ArgumentParser) -> None:
    """What data, split under which protocol, and where results go."""
    p.add_argument("--dataset", help="a shared dataset name or synthetic-<preset>; with "
                   "--data-path only a label (default: file-<the file's name>)")  # fmt: skip
    p.add_argument("--data-path", help="an unregistered interaction file or world folder")
    p.add_argument("--data-format", default="auto", choices=("auto", "world", *INTERACTION_FORMATS),
                   help="auto: a folder with events/ is a world, .inter is RecBole, .txt is "
                   "'user item' lines, .csv/.tsv/.parquet/.jsonl a table")  # fmt: skip
    p.add_argument("--columns", nargs="*", default=[], metavar="ROLE=NAME",
                   help="table format: user=..., item=..., time=... column names")  # fmt: skip
    p.add_argument("--protocol", default="full", choices=("full", "sampled", "live"))
    p.add_argument("--target", default="product", choices=("product", "room"), help="synthetic")
    p.add_argument("--max-valid-users", type=int, default=10_000, help="tuning subsample")
    p.add_argument("--fold-valid", action="store_true",
                   help="leave-one-out data: validate on --max-valid-users users only and train "
                   "every model on the other users' validation events too (Klenitskiy & "
                   "Vasilev's protocol)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="split and validation sampling seed")
    p.add_argument("--data-dir", default=None, help="shared data folder ($RECSYS_DATA_DIR)")
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--note", action="append", default=[],
                   help="a line for the report's header (e.g. where included runs came from); "
                   "repeatable")  # fmt: skip


def _model_arguments(p: argparse.ArgumentParser) -> None:
    """Which models, their grids and seeds, and how they are compared."""
    p.add_argument("--models", nargs="*", default=list(DEFAULT_MODELS),
                   help="models to run here (none: only combine --include reports)")  # fmt: skip
    p.add_argument("--metric", default="ndcg@10", help="tuning and comparison metric")
    p.add_argument("--quick", action="store_true", help="one grid point per model (smoke run)")
    p.add_argument("--no-refine", action="store_true",
                   help="every model kept to its grid (no refinement)")  # fmt: skip
    p.add_argument("--grid", action="append", default=[], metavar="MODEL=JSON",
                   help="a model's grid as a JSON list, e.g. sasrec='[{\"dropout\": 0.3}]' "
                   "(repeatable)")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="training seeds of the trained models (tuned with the first)")  # fmt: skip
    p.add_argument("--sequential-config", default=None,
                   help="YAML with the sequential model's default, grid and overrides")  # fmt: skip
    p.add_argument("--threads", type=int, default=None,
                   help="torch and BLAS threads (default: each library's own)")  # fmt: skip


def _apart_arguments(p: argparse.ArgumentParser) -> None:
    """Trained models run elsewhere (a GPU, one grid point or seed a process) and combined."""
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where trained models train and score")  # fmt: skip
    p.add_argument(
        "--fbgemm-cpu-fallback",
        action="store_true",
        help="CUDA with only fbgemm-gpu-cpu: benchmarks/gpu/fbgemm_cuda_fallback.py",
    )
    p.add_argument("--grid-point", type=int, default=None, metavar="I",
                   help="train only the I-th point of the trained models' grid (points run "
                   "apart, combined later with --include)")  # fmt: skip
    p.add_argument(
        "--train-seconds",
        type=float,
        default=None,
        help="a time budget per training of the trained models (trainer max_seconds)",
    )
    p.add_argument(
        "--save-per-user",
        action="store_true",
        help="keep every test target's metrics in the JSON, for --include elsewhere",
    )
    p.add_argument(
        "--include",
        nargs="*",
        default=[],
        metavar="REPORT",
        help="reports of the same dataset, protocol and split written with "
        "--save-per-user (models run on another machine, or grid points and seeds "
        "run apart): combined with this run's models before the comparisons",
    )


def data_format(path: Path, declared: str) -> str:
    """The format of an unregistered file or folder, from its shape when ``auto``."""
    if declared != "auto":
        return declared
    if (path / "events").is_dir():
        return "world"
    by_suffix = {".inter": "recbole", ".txt": "user_item_lines"}
    return by_suffix.get(path.suffix.lower(), "table")


def parse_grids(items: list[str]) -> dict[str, list[dict]]:
    """``MODEL=JSON`` pairs -> {model: grid}."""
    grids = {}
    for item in items:
        name, _, text = item.partition("=")
        grid = json.loads(text)
        if not name or not isinstance(grid, list) or not all(isinstance(g, dict) for g in grid):
            raise SystemExit(f"--grid {item!r}: expected MODEL=[{{...}}, ...]")
        grids[name] = grid
    return grids


def sequential_grid(path: str, dataset: str) -> tuple[str, list[dict], dict]:
    """(model name, its grid with the default and the dataset's overrides merged in, the
    overrides applied) from a ``--sequential-config`` file."""
    config = yaml.safe_load(Path(path).read_text())
    missing = {"model", "default", "grid"} - set(config)
    if missing:
        raise SystemExit(f"{path}: missing keys {sorted(missing)}")
    overrides = (config.get("protocol_overrides") or {}).get(dataset, {})
    grid = [{**config["default"], **point, **overrides} for point in config["grid"]]
    return config["model"], grid, overrides


def label(args: argparse.Namespace) -> str:
    if args.dataset.startswith("synthetic-") or args.data_format == "world":
        return f"{args.dataset}-{args.target}"
    return args.dataset


def load_split(args: argparse.Namespace):
    """The benchmark's split (new-item targets outside the live protocol, validation folded
    when asked) and the interactions' timestamps."""
    columns = dict(item.split("=", 1) for item in args.columns)
    split, timestamps = make_split(
        args.dataset, target=args.target, data_dir=args.data_dir, seed=args.seed,
        path=args.data_path, format=args.data_format if args.data_path else "world",
        columns=columns,
    )  # fmt: skip
    if args.protocol != "live" and split.valid.has_candidates:
        split = new_item_targets(split)
    if args.fold_valid:
        split = fold_unsampled_validation(split, args.max_valid_users, args.seed)
    notes = split_notes(split)
    for note in notes:
        logging.getLogger("quality").warning("%s: %s", split.name, note)
    check_stages(split, notes)
    return split, timestamps, notes


def candidates_for(args: argparse.Namespace, split, timestamps) -> list:
    """Every model asked for, with its grid; trainable models get the world they read."""
    grids = {**(quick_grids() if args.quick else {}), **parse_grids(args.grid)}
    if args.sequential_config:
        name, grid, _ = sequential_grid(args.sequential_config, args.dataset)
        grids[name] = [{**g, "max_epochs": 2} for g in grid[:1]] if args.quick else grid
    if args.grid_point is not None:
        for name in (m for m in args.models if m in MODELS):
            points = grids.get(name, [{}])
            if not 0 <= args.grid_point < len(points):
                raise SystemExit(f"--grid-point {args.grid_point}: {name} has {len(points)} points")
            grids[name] = [points[args.grid_point]]
    run_keys = {"device": args.device} if args.device != "cpu" else {}
    if args.train_seconds:
        run_keys["max_seconds"] = args.train_seconds
    for name in (m for m in args.models if m in MODELS and run_keys):
        grids[name] = [{**g, **run_keys} for g in grids.get(name, [{}])]
    context = None
    if any(m in MODELS for m in args.models) and args.data_format == "world":
        context = world_context(load_tables(args.data_path))
    elif any(m in MODELS for m in args.models) and args.dataset.startswith("synthetic-"):
        context = benchmark_context(args.dataset, seed=args.seed, data_dir=args.data_dir)
    return build_candidates(split, args.models, timestamps=timestamps, grids=grids or None,
                            protocol=args.protocol, context=context,
                            seeds=args.seeds, refine=not args.no_refine)  # fmt: skip


def result_table(args: argparse.Namespace, results, ks) -> tuple[str, dict | None]:
    """The markdown table of the results (and the published references beside it)."""
    prefix = "sampled_" if args.protocol == "sampled" else ""
    columns = [f"{prefix}{m}@{k}" for m in ("hr", "ndcg") for k in ks] + [f"{prefix}mrr"]
    if args.protocol == "live":
        columns += ["repeat/ndcg@10", "new/ndcg@10"]
    table = markdown_table(results, columns)
    refs = references_for(args.dataset, args.protocol)
    if refs:
        table += "\n\n" + references_table(refs)
    return table, refs


def write_report(args: argparse.Namespace, report: dict) -> None:
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"quality_{label(args)}_{args.protocol}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    header = f"# {stem}\n\n`{report['command']}` ({report['seconds']} s)\n\n"
    notes = [*report["split_notes"], *report["notes"]]
    header += "".join(f"- {note}\n" for note in notes)
    header += "\n" if notes else ""
    (out / f"{stem}.md").write_text(header + report["table"] + "\n")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads, "blas")  # EASE's inverse runs in LAPACK through scipy
    if args.fbgemm_cpu_fallback:
        from gpu.fbgemm_cuda_fallback import install

        logging.getLogger("quality").info("fbgemm CUDA fallbacks (added, refused): %s", install())
    started, load_before = time.time(), os.getloadavg()
    split, timestamps, notes = load_split(args)
    settings = QualitySettings(protocol=args.protocol, metric=args.metric, seed=args.seed,
                               max_valid_users=args.max_valid_users)  # fmt: skip
    results = run_quality(split, candidates_for(args, split, timestamps), settings)
    if args.include:
        results = combine_by_name([*results, *included(args, split)], settings.metric)
        check_targets(results)
        compare_results(results, settings)
    table, refs = result_table(args, results, settings.ks)
    report = {
        "dataset": label(args),
        "protocol": args.protocol if args.protocol != "sampled" else "sampled-100",
        "command": recorded_command(
            "benchmarks/quality.py", sys.argv[1:] if argv is None else argv
        ),
        "split": split.meta,
        "split_notes": notes,
        "notes": args.note,
        "settings": {
            **settings.__dict__,
            "ks": list(settings.ks),
            "quick": args.quick,
            "seeds": args.seeds,
        },
        "sequential_config": sequential_config_record(args),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },  # fmt: skip
        "seconds": round(time.time() - started, 1),
        "included": [f"<local>/{Path(i).parent.name}/{Path(i).name}" for i in args.include],
        "models": {r.name: r.to_json(per_user=args.save_per_user) for r in results},
        "references": refs,
        "table": table,
    }
    write_report(args, report)
    print(table)
    return report


def included(args: argparse.Namespace, split) -> list:
    """The models of every ``--include`` report, checked to be of this dataset, protocol and
    split (so their per-target values line up with this run's)."""
    meta = json.loads(json.dumps(split.meta))
    protocol = args.protocol if args.protocol != "sampled" else "sampled-100"
    out = []
    for path in args.include:
        report = json.loads(Path(path).read_text())
        found = (report.get("dataset"), report.get("protocol"), report.get("split"))
        if found != (label(args), protocol, meta):
            raise SystemExit(
                f"--include {path}: dataset, protocol and split {found[:2]} / {found[2]} differ "
                f"from this run's {(label(args), protocol)} / {meta}"
            )
        out += [result_from_json(name, entry, source=path)
                for name, entry in report["models"].items()]  # fmt: skip
    return out


def check_targets(results) -> None:
    """Every result scored the same test targets (one per-target value each)."""
    sizes = {r.name: len(next(iter(r.per_user.values()))) for r in results}
    if len(set(sizes.values())) > 1:
        raise SystemExit(f"results scored different numbers of test targets: {sizes}")


def sequential_config_record(args: argparse.Namespace) -> dict | None:
    """The sequential config's path, its file contents and the overrides this dataset got."""
    if not args.sequential_config:
        return None
    _, _, overrides = sequential_grid(args.sequential_config, args.dataset)
    return {
        "path": args.sequential_config,
        "config": yaml.safe_load(Path(args.sequential_config).read_text()),
        "overrides_applied": overrides,
    }


def references_table(refs: dict) -> str:
    """Published rows under the same protocol, for side-by-side reading."""
    lines = [
        f"Published, same protocol ({refs['protocol']}):",
        "",
        "| model | hr@10 | ndcg@10 | source |",
        "|---|---|---|---|",
    ]
    for r in refs["rows"]:
        hr = "-" if r["hr@10"] is None else f"{r['hr@10']:.4f}"
        lines.append(f"| {r['model']} | {hr} | {r['ndcg@10']:.4f} | {r['source']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
