"""Erasure at scale: forgetting 1% of viewers against the pipeline's own time, the audit after
it, and membership inference on the forgotten users before and after.

    python benchmarks/privacy.py --tree RUN WORLD [--tree ...] --world WORLD \\
        --checkpoint RUN/two_tower --pipeline-log RUN/pipeline.log --label small \\
        [--share 0.01] [--seed 0] [--work DIR]

The folders of ``--tree`` (a ``recsys-pipeline`` run folder and the world folder it read, plus
any other run folders) are copied to a work folder first, so the originals stay as they were.
On the copy: the membership-inference advantage on a seeded ``--share`` of the world's viewers
(``recsys.erasure.membership``: their true products from the world's events vs 200 other
viewers scored as strangers), then ``forget`` of those viewers over every copied folder (timed;
compared with the pipeline's own wall time, from the first to the last line of its log), then
``recsys-audit``'s search (every file: forgotten ids, PII in data files), then the advantage
again. Results are merged into ``benchmarks/results/privacy.json`` under ``--label`` and the
markdown ``privacy.md`` is rewritten from all labels.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.erasure.audit import audit
from recsys.erasure.forget import ForgetRequest, forget
from recsys.erasure.membership import membership

RESULTS = Path(__file__).resolve().parent / "results"
_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+\]")
PROBE_EVENTS = ("click", "cart", "purchase")


def pipeline_seconds(log: Path) -> float:
    """Wall time of a Hydra job: from its log's first timestamped line to its last."""
    stamps = [m.group(1) for line in log.read_text(errors="replace").splitlines()
              if (m := _STAMP.match(line))]  # fmt: skip
    first, last = (datetime.strptime(s, "%Y-%m-%d %H:%M:%S") for s in (stamps[0], stamps[-1]))
    return (last - first).total_seconds()


def probe_of(world: Path, users: np.ndarray) -> pd.DataFrame:
    """The (user_id, product_id, ts) clicks, carts and purchases of ``users``."""
    parts = []
    for part in sorted((world / "events").glob("part-*.parquet")):
        e = pd.read_parquet(part, columns=["user_id", "product_id", "ts", "event_type"])
        e = e[e["user_id"].isin(users) & e["event_type"].isin(PROBE_EVENTS)]
        parts.append(e[["user_id", "product_id", "ts"]])
    return pd.concat(parts, ignore_index=True)


def retrain(ckpt: Path, run_dir: Path, cache: str) -> Path:
    """The checkpoint's model trained again, as recsys-pipeline trains it, on the erased world
    (its vocabulary and windows built without the forgotten viewers): the reference a retrain
    reaches."""
    from recsys.cli.pipeline import compose_job
    from recsys.recommenders.experiment import train
    from recsys.training.checkpoint import BEST, load_checkpoint

    saved = load_checkpoint(ckpt / BEST if ckpt.is_dir() else ckpt)["config"]
    overrides = ["model=two_tower_live", f"data={saved['data']['name']}",
                 f"data.cache_dir={cache}", f"run_dir={run_dir}", "trainer.max_epochs=3",
                 "trainer.batch_size=512", "trainer.patience=2", "trainer.num_threads=1",
                 "trainer.progress=false", "eval_stages=[valid]"]  # fmt: skip
    train(compose_job("train", overrides))
    return run_dir / BEST


def _copy(trees: list[Path], work: Path) -> list[Path]:
    shutil.rmtree(work, ignore_errors=True)
    out = []
    for i, tree in enumerate(trees):
        out.append(work / str(i) / tree.name)  # the name kept: a world cache is found by it
        shutil.copytree(tree, out[-1])
    return out


def run(args: argparse.Namespace) -> dict:
    roots = _copy([Path(t) for t in args.tree], Path(args.work))
    world = roots[[Path(t).resolve() for t in args.tree].index(Path(args.world).resolve())]
    users = pd.read_parquet(world / "users.parquet")["user_id"].to_numpy(np.int64)
    rng = np.random.default_rng(args.seed)
    gone = rng.choice(users, max(1, round(args.share * len(users))), replace=False)
    others = rng.choice(np.setdiff1d(users, gone), min(200, len(users) - len(gone)), False)
    probe = probe_of(world, np.concatenate([gone, others]))
    ckpt = roots[0] / Path(args.checkpoint).relative_to(args.tree[0]) if args.checkpoint else None
    cache = str(world.parent)
    before = membership(ckpt, probe, gone, others, cache_dir=cache) if ckpt else None
    began = time.perf_counter()
    report = forget(ForgetRequest(tuple(gone.tolist()), tuple(map(str, roots)), args.ts))
    seconds = time.perf_counter() - began
    found = audit(roots)
    after = membership(ckpt, probe, gone, others, cache_dir=cache) if ckpt else None
    retrained = None
    if ckpt and args.retrain:
        retrained = asdict(membership(retrain(ckpt, Path(args.work) / "retrain", cache), probe,
                                      gone, others, cache_dir=cache))  # fmt: skip
    base = pipeline_seconds(Path(args.pipeline_log)) if args.pipeline_log else None
    files = sum(1 for r in roots for p in r.rglob("*") if p.is_file())
    return {"users": len(users), "forgotten": len(gone), "files": files,
            "bytes": sum(p.stat().st_size for r in roots for p in r.rglob("*") if p.is_file()),
            "pipeline_seconds": base, "forget_seconds": round(seconds, 2),
            "forget_share_of_pipeline": round(seconds / base, 4) if base else None,
            "files_changed": report.files_changed, "removed": report.removed,
            "audit": {"files": found.files, "occurrences": dict(found.occurrences),
                      "hits": [h.line() for h in found.hits[:20]]},
            "membership": {"before": asdict(before), "after": asdict(after),
                           "retrained": retrained} if ckpt else None,
            "command": " ".join(sys.argv), "pipeline_command": args.pipeline_command}  # fmt: skip


def markdown(results: dict) -> str:
    lines = ["# Erasure: forgetting 1% of viewers, the audit after it, membership inference", "",
             "`python benchmarks/privacy.py ...` (each row names its command below). Forget time "
             "is the in-process `recsys.erasure.forget` over copies of the run and world folders; "
             "the pipeline's time is its own log's first-to-last line (a row whose tree holds "
             "other commands' output too compares more work with the pipeline's time alone). "
             "Membership inference: advantage (max TPR - FPR) and AUC of telling the forgotten "
             "viewers from 200 others scored as strangers, on the checkpoint before forgetting, "
             "after it, and on a model retrained without them.", "",
             "| run | viewers | forgotten | files | forget s | pipeline s | share | audit hits "
             "| MIA adv. before | after | retrained | AUC before | after | retrained |",
             "|" + "---|" * 14]  # fmt: skip
    for label, r in results.items():
        m, hits = r["membership"], sum(r["audit"]["occurrences"].values())
        base, share = r["pipeline_seconds"], r["forget_share_of_pipeline"]
        mia = " | ".join(["-"] * 6)
        if m:
            r_ = m.get("retrained") or {}
            mia = " | ".join(f"{x:.3f}" if isinstance(x, float) else "-" for x in (
                m["before"]["advantage"], m["after"]["advantage"], r_.get("advantage"),
                m["before"]["auc"], m["after"]["auc"], r_.get("auc")))  # fmt: skip
        lines.append(f"| {label} | {r['users']:,} | {r['forgotten']} | {r['files']:,} | "
                     f"{r['forget_seconds']:.1f} | {f'{base:.0f}' if base else 'not run'} | "
                     f"{f'{100 * share:.1f}%' if share else '-'} | {hits} | {mia} |")  # fmt: skip
    for label, r in results.items():
        lines += ["", f"**{label}**: `{r['command']}`; rows removed by kind {r['removed']}; "
                  f"{r['files_changed']} files rewritten."]  # fmt: skip
        if r.get("pipeline_command"):
            lines[-1] += f" The folders were written by `{r['pipeline_command']}`."
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", required=True, help="run or world folder")
    p.add_argument("--world", required=True, help="the world folder among the trees")
    p.add_argument("--checkpoint", help="two-tower run folder in the 1st tree (else no MIA)")
    p.add_argument("--pipeline-log", help="the pipeline's log (else no time ratio)")
    p.add_argument("--pipeline-command", help="the command(s) that wrote the trees, for the record")
    p.add_argument("--label", required=True)
    p.add_argument("--share", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ts", type=int, default=1_800_000_000)
    p.add_argument("--work", default="/tmp/privacy-bench")
    p.add_argument("--retrain", action="store_true", help="also attack a model retrained "
                   "without the forgotten viewers")  # fmt: skip
    args = p.parse_args()
    path = RESULTS / "privacy.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[args.label] = run(args)
    path.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "privacy.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
