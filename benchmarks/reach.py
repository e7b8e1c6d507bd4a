"""Timely reach: the must-shows in the market, trigger throughput and trigger-to-decision delay.

    python benchmarks/reach.py --preset small --days 14 --work-dir /tmp/reach-bench

1. **Study** (``recsys.reach.study`` with the shipped ``recsys/conf/reach.yaml``): the market
   explores with randomised sends, then no-send, blast, the rule and the learned policy (and
   its send-time experiment) run the same ``--days`` days on copies of it; increments over
   no-send with paired 95% intervals, the must-show checks.
2. **Throughput**: the no-send arm's whole event log (every day, exploring included) replayed
   through a ``TriggerEngine`` in batches of ``--batch`` events on one core, the clock advanced
   after each batch; best of ``--repeats``. Again with every event delivered twice (the second
   copy shuffled into the next batch): the same triggers, and the rate counting both copies.
3. **Delay**: the last evaluated day's events streamed in micro-batches of ``--micro`` events;
   per micro-batch, the wall time from its arrival to the decisions (``decide`` with the learned
   policy's model, history and the market's consent, no message before the batch's last
   event) on every trigger it caused; p50 / p99 over triggers.

Writes ``benchmarks/results/reach.{json,md}`` (the study's messages table stays in the work
folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_module

from recsys.cli.reach import configs_of
from recsys.data.schema import TABLES
from recsys.data.tables import read_table
from recsys.reach.decide import Catalogue, decide
from recsys.reach.report import markdown, study_record
from recsys.reach.stream import EventBatch
from recsys.reach.study import run_study
from recsys.reach.triggers import TriggerConfig, TriggerEngine

RESULTS = Path(__file__).resolve().parent / "results"


def _frames(folder: Path) -> dict[str, pd.DataFrame]:
    return {n: pd.read_parquet(folder / f"{n}.parquet")
            for n in ("live_sessions", "showcase", "products")}  # fmt: skip


def _events(folder: Path, days: list[int]) -> pd.DataFrame:
    parts = [read_table(folder / "events" / f"part-{d:05d}.parquet", TABLES["events"])
             for d in days]  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def _replay(frames, batch: EventBatch, size: int) -> tuple[float, int, TriggerEngine]:
    engine = TriggerEngine(frames["live_sessions"], frames["showcase"], frames["products"],
                           TriggerConfig())  # fmt: skip
    n, started = 0, time.perf_counter()
    for i in range(0, len(batch), size):
        part = batch.take(slice(i, i + size))
        n += len(engine.push(part)) + len(engine.advance(int(part.ts.max())))
    return time.perf_counter() - started, n, engine


def throughput(frames, events: pd.DataFrame, size: int, repeats: int) -> dict:
    convert = time.perf_counter()
    batch = EventBatch.from_frame(events)
    convert = time.perf_counter() - convert
    runs = [_replay(frames, batch, size) for _ in range(repeats)]
    best = min(r[0] for r in runs)
    # At-least-once: each batch followed by a shuffled copy of itself in the next push.
    rng = np.random.default_rng(0)
    order = np.concatenate([np.r_[np.arange(i, min(i + size, len(batch))),
                                  rng.permutation(np.arange(i, min(i + size, len(batch))))]
                            for i in range(0, len(batch), size)])  # fmt: skip
    doubled = batch.take(order)
    seconds, n_twice, engine = _replay(frames, doubled, size)
    return {"events": len(batch), "batch": size, "seconds": best,
            "events_per_s": len(batch) / best, "triggers": runs[0][1],
            "convert_events_per_s": len(batch) / convert,
            "twice": {"deliveries": len(doubled), "seconds": seconds,
                      "deliveries_per_s": len(doubled) / seconds, "triggers": n_twice,
                      "same_triggers": n_twice == runs[0][1],
                      "duplicates_counted": engine.faults["duplicate event id"]}}  # fmt: skip


def delay(frames, events: pd.DataFrame, warm: pd.DataFrame, policy, consent, micro: int) -> dict:
    """Wall seconds from a micro-batch's arrival to the decisions on the triggers it caused."""
    engine = TriggerEngine(frames["live_sessions"], frames["showcase"], frames["products"],
                           TriggerConfig())  # fmt: skip
    engine.push(EventBatch.from_frame(warm))
    engine.advance(int(warm["ts"].max()))
    catalogue = Catalogue.of(frames["live_sessions"], frames["products"])
    batch, waits, sizes, today = EventBatch.from_frame(events), [], [], None
    for i in range(0, len(batch), micro):
        arrived = time.perf_counter()
        part = batch.take(slice(i, i + micro))
        now = int(part.ts.max())
        triggers = pd.concat([engine.push(part), engine.advance(now)], ignore_index=True)
        if triggers.empty:
            continue
        out = decide(triggers, consent, policy.history, policy.model, catalogue, policy.config,
                     now=now, today=today)  # fmt: skip
        today = pd.concat([today, out.loc[out["send"]]], ignore_index=True)
        waits += [time.perf_counter() - arrived] * len(triggers)
        sizes.append(len(triggers))
    w = np.array(waits)
    return {"micro_batch": micro, "events": len(batch), "triggers": len(w),
            "decision_calls": len(sizes), "p50_ms": float(np.percentile(w, 50) * 1e3),
            "p99_ms": float(np.percentile(w, 99) * 1e3), "max_ms": float(w.max() * 1e3),
            "sent": 0 if today is None else len(today)}


def _md(out: dict) -> str:
    t, d = out["throughput"], out["delay"]
    lines = [markdown(out["study"], out["command"]), "## Trigger evaluation (one core)", "",
             f"`{out['command']}`", "",
             "| measure | value |", "|---|---:|",
             f"| replay: events/s (batches of {t['batch']:,}, best of {out['repeats']}) | "
             f"{t['events_per_s']:,.0f} |",
             f"| events replayed / triggers | {t['events']:,} / {t['triggers']:,} |",
             f"| at-least-once (every event twice): deliveries/s | "
             f"{t['twice']['deliveries_per_s']:,.0f} |",
             f"| at-least-once: same triggers / duplicates counted | "
             f"{t['twice']['same_triggers']} / {t['twice']['duplicates_counted']:,} |",
             f"| frame -> columns: events/s | {t['convert_events_per_s']:,.0f} |",
             f"| trigger -> decision delay p50 / p99 (micro-batches of {d['micro_batch']}) | "
             f"{d['p50_ms']:.1f} ms / {d['p99_ms']:.1f} ms |",
             f"| triggers decided / decision calls | {d['triggers']:,} / {d['decision_calls']:,} |",
             "", f"Machine: {out['machine']}.", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--work-dir", default="/tmp/reach-bench")
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--micro", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "reach"))
    args = p.parse_args(argv)
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        cfg = compose(config_name="reach", overrides=[
            f"world.preset={args.preset}", f"days={args.days}", f"out_dir={args.work_dir}"])
    study, decision, templates = configs_of(cfg)
    started = time.perf_counter()
    runs = run_study(study, decision, templates, args.work_dir, progress=True)
    record, table = study_record(runs, study)
    record["seconds"] = round(time.perf_counter() - started, 1)
    table.to_parquet(Path(args.work_dir) / "messages.parquet", index=False)
    base = runs["no_send"].folder
    frames = _frames(base)
    everything = _events(base, list(range(runs["no_send"].days[-1] + 1)))
    last = runs["no_send"].days[-1]
    learned = runs["learned"]
    out = {"command": "python benchmarks/reach.py " + shlex.join(sys.argv[1:] if argv is None
                                                                 else argv),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
                      f"(shared), Python {platform.python_version()}",
           "repeats": args.repeats, "study": record,
           "throughput": throughput(frames, everything, args.batch, args.repeats),
           "delay": delay(frames, _events(learned.folder, [last]),
                          _events(learned.folder, list(range(last))), learned.policy,
                          _consent(learned.folder, last), args.micro)}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(out, indent=2, ensure_ascii=False,
                                                   default=_plain) + "\n")  # fmt: skip
    Path(args.out + ".md").write_text(_md(out))
    print(_md(out))
    return out


def _consent(folder: Path, day: int) -> pd.DataFrame:
    """The consent the market held at the end of ``day`` (its saved state)."""
    state = pd.read_pickle(folder / "state" / f"day-{day:05d}.pkl")
    return state.consent


def _plain(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return str(value)


if __name__ == "__main__":
    main()
