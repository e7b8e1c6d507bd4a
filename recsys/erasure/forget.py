"""``forget``: remove users from every artifact under some folders, resumably.

The job is a journal of steps (``.forget-journal.json`` in the first folder), written before
anything changes: first the keys of the users' rows are collected (request, message, grant and
trigger ids, per world or market folder) into the journal, then one step per file (its kind from
``recsys.erasure.artifacts``), then the tombstones of each folder. Each step rewrites its file
atomically and is marked done in the journal (itself replaced atomically) when it changed
something; a step that found nothing may be redone after a crash at no harm. A run killed at any
moment leaves every file old or new; running again with the same request reads the journal,
removes half-written temporary files and goes on from the first step not done, so the tree it
ends with is the one an uninterrupted run writes. The journal, which names the users, is
deleted at the end.

Set ``RECSYS_FORGET_KILL_AFTER=N`` to have the process kill itself (SIGKILL) after N steps:
the crash the resumption is tested against.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from recsys.erasure.artifacts import (
    SKIP_NAMES,
    TMP_TAG,
    Forgotten,
    collect_links,
    erase,
    kind_of,
    replace_atomically,
    scope_of,
)
from recsys.privacy.tombstones import Tombstones

JOURNAL = ".forget-journal.json"
KILL_AFTER = "RECSYS_FORGET_KILL_AFTER"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForgetRequest:
    users: tuple[int, ...]  # ids as the tables hold them (pseudonyms)
    roots: tuple[str, ...]  # run and world folders
    ts: int  # the time the tombstones record
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.roots:
            raise ValueError("forget: no folder given (roots)")
        missing = [r for r in self.roots if not Path(r).is_dir()]
        if missing:
            raise ValueError(f"forget: not a folder: {missing}")


@dataclass
class ForgetReport:
    users: int
    steps: int
    resumed: bool
    seconds: float
    removed: dict[str, int] = field(default_factory=dict)  # kind -> rows (entries) removed
    files_changed: int = 0

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.removed.items()) if n)
        return (f"forget: {self.users} users out of {self.files_changed} files in "
                f"{self.seconds:.1f} s ({self.steps} steps{', resumed' if self.resumed else ''}); "
                f"removed: {kinds or 'nothing'}")  # fmt: skip


def _files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.name != JOURNAL and p.name not in SKIP_NAMES
        and not p.name.endswith(TMP_TAG)
    )  # fmt: skip


def plan(request: ForgetRequest) -> dict:
    """The journal of a fresh job: every file of every root with its kind, nothing done."""
    steps = []
    for root in map(Path, request.roots):
        for path in _files(root):
            steps.append({"path": str(path), "kind": kind_of(path),
                          "scope": scope_of(path, root), "done": False})  # fmt: skip
    return {"users": sorted(set(int(u) for u in request.users)), "ts": int(request.ts),
            "roots": list(request.roots), "links": None, "steps": steps}  # fmt: skip


def _save(journal: dict, path: Path) -> None:
    text = json.dumps(journal)
    replace_atomically(path, lambda tmp: tmp.write_text(text))


def _load_or_plan(request: ForgetRequest, path: Path) -> tuple[dict, bool]:
    if path.is_file():
        journal = json.loads(path.read_text())
        if journal["users"] != sorted(set(int(u) for u in request.users)):
            raise ValueError(f"forget: {path} is an unfinished job for other users; run it "
                             f"again with its users, or delete it to start over")  # fmt: skip
        return journal, True
    journal = plan(request)
    _save(journal, path)
    return journal, False


def _links(journal: dict, gone: Forgotten) -> None:
    """The keys of the users' rows, collected once (before any table changes) and kept."""
    if journal["links"] is None:
        for step in journal["steps"]:
            if step["kind"] == "table":
                collect_links(Path(step["path"]), gone, step["scope"])
        journal["links"] = {s: {k: v.tolist() for k, v in keys.items()}
                            for s, keys in gone.links.items()}  # fmt: skip
    gone.links = {s: {k: np.asarray(v) for k, v in keys.items()}
                  for s, keys in journal["links"].items()}  # fmt: skip


def _clean_temporaries(roots: list[str]) -> None:
    for root in roots:
        for tmp in Path(root).rglob(f"*{TMP_TAG}"):
            tmp.unlink()


def forget(request: ForgetRequest) -> ForgetReport:
    """Run (or finish) the job of ``request``; see the module notes."""
    began = time.perf_counter()
    path = Path(request.roots[0]) / JOURNAL
    journal, resumed = _load_or_plan(request, path)
    _clean_temporaries(journal["roots"])
    gone = Forgotten(np.asarray(journal["users"], dtype=np.int64))
    _links(journal, gone)
    _save(journal, path)
    kill_after = int(os.environ.get(KILL_AFTER, "0"))
    report = ForgetReport(len(gone.ids), len(journal["steps"]), resumed, 0.0)
    todo = [s for s in journal["steps"] if not s["done"]]
    for n, step in enumerate(tqdm(todo, desc="forget", disable=not request.progress), 1):
        removed = erase(step["kind"], Path(step["path"]), gone, step["scope"])
        report.removed[step["kind"]] = report.removed.get(step["kind"], 0) + removed
        report.files_changed += int(removed > 0)
        step["done"] = True
        if removed:  # a step that changed nothing is harmless to redo: no journal write
            _save(journal, path)
        if kill_after and n >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    for root in journal["roots"]:
        Tombstones.read(root).union(gone.ids, journal["ts"]).write(root)
    path.unlink()
    report.seconds = round(time.perf_counter() - began, 3)
    log.info(report.summary())
    return report
