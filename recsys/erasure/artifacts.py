"""Every kind of file the project writes, and how a user is removed from it.

``kind_of(path)`` names the handler of a file; ``erase(kind, path, gone)`` rewrites it without
the users of ``gone`` (``Forgotten``: their ids and the keys of the rows they made, such as
request and message ids) and returns how many rows (or entries) went. A file that holds none of
them is left byte for byte as it was. Every write is atomic: the new content goes to a
temporary file beside the old one, which ``os.replace`` then swaps in, so a crash leaves either
the old file or the new one (``recsys.erasure.journal`` finishes the job on a re-run).

Kinds: ``table`` (Parquet: the project's tables, market logs, profiles, tags, consent,
quarantine), ``vocab`` (``vocab/user.npy`` with its ``.json``), ``checkpoint`` (``.pt``: user
embedding rows, their optimiser moments and the user vocabulary; see
``recsys.erasure.checkpoints``), ``projector`` (TensorBoard projector ``metadata.tsv`` with its
``tensors.tsv``), ``text`` (JSON, CSV, TSV, Markdown, logs: lines naming a forgotten id),
``pickle`` (market states, coupon models: data frames, arrays and dicts walked), ``array``
(``.npy`` / ``.npz``: FAISS id lists and ingestion state are checked, never silently edited) and
``opaque`` (FAISS indexes, TensorBoard event files, images: checked by the audit).
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from recsys.erasure.checkpoints import erase_checkpoint
from recsys.erasure.walk import scrub

USER_COLUMNS = ("user_id", "unit")  # an experiment's unit is the viewer (or a room)
LINK_KEYS = ("request_id", "message_id", "grant_id", "trigger_id")  # rows a user's rows name
TEXT_SUFFIXES = {".json", ".csv", ".tsv", ".md", ".txt", ".log", ".jsonl", ".yaml", ".yml"}
SKIP_NAMES = {"tombstones.parquet"}
TMP_TAG = ".forget-tmp"
_NUMBER = re.compile(rb"(?<![0-9])[0-9]{3,20}(?![0-9])")


@dataclass
class Forgotten:
    """The users to remove, and per scope (a world or market folder) the keys of their rows."""

    ids: np.ndarray  # sorted int64
    links: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # scope -> key -> ids

    def __post_init__(self) -> None:
        self.ids = np.unique(np.asarray(self.ids, dtype=np.int64))
        self._text = {str(i).encode() for i in self.ids.tolist()}

    def rows_of(self, frame: pd.DataFrame, scope: str) -> np.ndarray:
        """(n,) bool: rows of a forgotten user, or naming one of their rows' keys."""
        hit = np.zeros(len(frame), dtype=bool)
        for c in USER_COLUMNS:
            if c in frame.columns:
                hit |= np.isin(pd.to_numeric(frame[c], errors="coerce").to_numpy(), self.ids)
        for key, ids in self.links.get(scope, {}).items():
            if key in frame.columns and len(ids):
                hit |= np.isin(frame[key].to_numpy(), ids)
        return hit

    def in_text(self, line: bytes) -> bool:
        return any(m.group() in self._text for m in _NUMBER.finditer(line))


def scope_of(path: Path, root: Path) -> str:
    """The world or market folder a table belongs to: the nearest folder up to ``root`` holding
    ``users.parquet`` (keys such as request ids are unique only within it)."""
    for folder in [path.parent, *path.parent.parents]:
        if (folder / "users.parquet").is_file() or folder == root:
            return str(folder)
    return str(root)


def kind_of(path: Path) -> str:
    name, suffix = path.name, path.suffix
    if suffix == ".parquet":
        return "table"
    if path.parent.name == "vocab" and name == "user.npy":
        return "vocab"
    if suffix == ".pt":
        return "checkpoint"
    if name == "metadata.tsv" and (path.parent / "tensors.tsv").is_file():
        return "projector"
    if name == "tensors.tsv":
        return "opaque"  # rewritten with its metadata.tsv
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix == ".pkl":
        return "pickle"
    if suffix in (".npy", ".npz"):
        return "array"
    return "opaque"


def replace_atomically(path: Path, write) -> None:
    """``write(tmp_path)``, then the temporary file takes ``path``'s place."""
    tmp = path.with_name(f".{path.name}{TMP_TAG}")
    write(tmp)
    os.replace(tmp, path)


def user_columns(path: Path) -> list[str]:
    names = pq.read_schema(path).names
    return [c for c in names if c in USER_COLUMNS or c in LINK_KEYS]


def collect_links(path: Path, gone: Forgotten, scope: str) -> None:
    """Remember the keys (request, message, grant, trigger ids) of the forgotten users' rows in
    a table that has both, so tables holding only those keys lose the rows too."""
    cols = user_columns(path)
    keys = [k for k in LINK_KEYS if k in cols]
    if "user_id" not in cols or not keys:
        return
    frame = pd.read_parquet(path, columns=["user_id", *keys])
    mine = np.isin(pd.to_numeric(frame["user_id"], errors="coerce").to_numpy(), gone.ids)
    links = gone.links.setdefault(scope, {})
    for k in keys:
        found = frame.loc[mine, k].to_numpy()
        found = found[found >= 0]  # -1: no such row (a card without a coupon)
        links[k] = np.union1d(links.get(k, np.zeros(0, found.dtype)), found)


def erase_table(path: Path, gone: Forgotten, scope: str) -> int:
    cols = user_columns(path)
    if not cols:
        return 0
    probe = pd.read_parquet(path, columns=cols)
    hit = gone.rows_of(probe, scope)
    if not hit.any():
        return 0
    table = pq.read_table(path)
    kept = table.filter(pa_mask(~hit))
    replace_atomically(path, lambda tmp: pq.write_table(kept, tmp))
    return int(hit.sum())


def pa_mask(keep: np.ndarray):
    # pyarrow is only needed where a table is filtered.
    import pyarrow as pa

    return pa.array(keep)


def erase_vocab(path: Path, gone: Forgotten) -> int:
    """The ids go; later ids move up one place per id removed (as a vocabulary built from the
    tables without them would have them)."""
    ids = np.load(path)
    keep = ~np.isin(ids, gone.ids)
    if keep.all():
        return 0
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    replace_atomically(path, lambda tmp: _save_npy(tmp, ids[keep]))
    meta["size"] = int(keep.sum()) + (meta["size"] - len(ids))
    replace_atomically(meta_path, lambda tmp: tmp.write_text(json.dumps(meta)))
    return int((~keep).sum())


def _save_npy(tmp: Path, array: np.ndarray) -> None:
    with open(tmp, "wb") as f:
        np.save(f, array)


def erase_projector(path: Path, gone: Forgotten) -> int:
    """Rows of ``metadata.tsv`` naming a forgotten id, and the same rows of ``tensors.tsv``."""
    meta = path.read_bytes().splitlines(keepends=True)
    tensors_path = path.parent / "tensors.tsv"
    tensors = tensors_path.read_bytes().splitlines(keepends=True)
    header = 1 if len(meta) == len(tensors) + 1 else 0  # a header row names the columns
    drop = [i for i, line in enumerate(meta) if i >= header and gone.in_text(line)]
    if not drop:
        return 0
    dropped = set(drop)
    keep_t = [t for i, t in enumerate(tensors) if i + header not in dropped]
    replace_atomically(tensors_path, lambda tmp: tmp.write_bytes(b"".join(keep_t)))
    keep_m = [m for i, m in enumerate(meta) if i not in dropped]
    replace_atomically(path, lambda tmp: tmp.write_bytes(b"".join(keep_m)))
    return len(drop)


def erase_text(path: Path, gone: Forgotten) -> int:
    """JSON documents are walked (entries and list items naming a forgotten id go); other text
    loses the lines that name one."""
    data = path.read_bytes()
    if not gone.in_text(data):
        return 0
    if path.suffix == ".json":
        doc, removed = scrub(json.loads(data), gone.ids)
        text = json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
        replace_atomically(path, lambda tmp: tmp.write_text(text))
        return removed
    lines = data.splitlines(keepends=True)
    kept = [line for line in lines if not gone.in_text(line)]
    replace_atomically(path, lambda tmp: tmp.write_bytes(b"".join(kept)))
    return len(lines) - len(kept)


def erase_pickle(path: Path, gone: Forgotten) -> int:
    with open(path, "rb") as f:
        obj = pickle.load(f)
    obj, removed = scrub(obj, gone.ids)
    if removed:
        replace_atomically(path, lambda tmp: tmp.write_bytes(pickle.dumps(obj, protocol=5)))
    return removed


def check_array(path: Path, gone: Forgotten) -> int:
    """Id lists (a FAISS index's ``ids.npy``) and ingestion state must not name a forgotten
    user; one that does cannot be edited in place (its index would be out of step)."""
    loaded = np.load(path, allow_pickle=False)
    arrays = [loaded[k] for k in loaded.files] if hasattr(loaded, "files") else [loaded]
    for a in arrays:
        if a.dtype.kind in "iu" and np.isin(a, gone.ids).any():
            raise ValueError(f"{path}: holds ids of forgotten users; rebuild it (recsys-index "
                             f"for an index) after the forget run")  # fmt: skip
    return 0


def erase(kind: str, path: Path, gone: Forgotten, scope: str) -> int:
    """Remove the users of ``gone`` from one file of ``kind``; rows (entries) removed."""
    if kind == "table":
        return erase_table(path, gone, scope)
    if kind == "vocab":
        return erase_vocab(path, gone)
    if kind == "checkpoint":
        return erase_checkpoint(path, gone.ids, replace_atomically)
    if kind == "projector":
        return erase_projector(path, gone)
    if kind == "text":
        return erase_text(path, gone)
    if kind == "pickle":
        return erase_pickle(path, gone)
    if kind == "array":
        return check_array(path, gone)
    return 0
