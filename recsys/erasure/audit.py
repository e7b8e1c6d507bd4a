"""The audit of an output tree: forgotten users, raw user ids and PII, wherever they hide.

``audit(roots, ids=..., raw_ids=...)`` reads every file under the folders and reports each
place one of the ids appears (``Hit``: file, where in it, what was found):

* Parquet tables: every integer column by value, every text column by the whole numbers in it,
  and text columns (comments) through the PII detector of ``recsys.privacy.pii``;
* NumPy arrays (``.npy``, ``.npz``: vocabularies, FAISS id lists): integer values;
* checkpoints (``.pt``): their user vocabulary (a forgotten id there means its embedding row is
  still the user's) and every integer tensor;
* text (JSON, CSV, TSV, Markdown, logs, YAML): whole numbers, and PII in the data files
  (CSV, TSV, JSON Lines, plain text) but not in the project's reports and logs, whose tables of
  figures the PII patterns would misread;
* anything else (pickles, FAISS indexes, TensorBoard event files, images): the raw bytes, for
  each id as a little-endian int64 at any offset and as its decimal digits.

The ids are those of ``tombstones.parquet`` in each folder (users forgotten there) plus any
given; ``raw_ids`` are the platform's own ids, which no output should hold once pseudonymised:
whole numbers are searched as above, other ids (``dy_83749201``, ``u-8f3a``) as whole tokens of
``[0-9A-Za-z_.@+-]`` in every text, text column and file's bytes (an id with other characters:
as a substring). The tombstone lists themselves are not searched.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from recsys.erasure.artifacts import TEXT_SUFFIXES
from recsys.privacy.pii import find_pii
from recsys.privacy.tombstones import TOMBSTONE_FILE, Tombstones

_NUMBER = re.compile(r"(?<![0-9])[0-9]{3,20}(?![0-9])")
_TOKEN = re.compile(r"[0-9A-Za-z_.@+-]+")
DATA_TEXT = {".csv", ".tsv", ".jsonl", ".txt"}  # text files that may carry users' own words


@dataclass(frozen=True)
class Hit:
    path: str
    where: str  # column, key or byte offset
    what: str  # "forgotten id", "raw id" or "pii:<KIND>"
    count: int
    sample: str = ""  # the id (forgotten / raw) or the PII kind's masked text

    def line(self) -> str:
        return f"{self.path} [{self.where}]: {self.count} x {self.what} {self.sample}".rstrip()


@dataclass
class AuditReport:
    files: int = 0
    hits: list[Hit] = field(default_factory=list)
    ids: int = 0
    raw_ids: int = 0
    pii_checked: bool = True

    @property
    def occurrences(self) -> Counter:
        out: Counter = Counter()
        for h in self.hits:
            out[h.what.split(":")[0]] += h.count
        return out

    def summary(self) -> str:
        head = (f"audit: {self.files} files, {self.ids} forgotten ids and {self.raw_ids} raw ids "
                f"searched, PII {'checked' if self.pii_checked else 'not checked'}")  # fmt: skip
        if not self.hits:
            return head + ": nothing found"
        counts = ", ".join(f"{k} {n}" for k, n in sorted(self.occurrences.items()))
        return "\n".join([f"{head}: FOUND {counts}", *("  " + h.line() for h in self.hits)])


def split_raw_ids(raw_ids) -> tuple[np.ndarray, list[str]]:
    """(whole-number ids as int64, the other ids as text) of a list of platform ids."""
    values = np.asarray(raw_ids)
    if values.dtype.kind in "iu":
        return values.astype(np.int64), []
    text = {str(v).strip() for v in values.tolist()} - {""}
    numbers = {v for v in text if v.isascii() and v.isdigit() and len(v) <= 18}
    return np.asarray(sorted(numbers), dtype=np.int64), sorted(text - numbers)


class _Targets:
    def __init__(self, ids: np.ndarray, raw_ids) -> None:
        raw, words = split_raw_ids(raw_ids)
        self.ids, self.raw = np.unique(ids), np.unique(raw)
        self.all = np.union1d(self.ids, self.raw)
        self.text = {str(v): ("forgotten id" if v in set(self.ids.tolist()) else "raw id")
                     for v in self.all.tolist()}  # fmt: skip
        self.words = {w for w in words if _TOKEN.fullmatch(w)}
        self.odd = [w for w in words if not _TOKEN.fullmatch(w)]  # found as substrings
        self.n_raw = len(self.raw) + len(words)

    def values(self, path: str, where: str, values: np.ndarray) -> list[Hit]:
        values = np.asarray(values).reshape(-1)
        out = []
        for what, pool in (("forgotten id", self.ids), ("raw id", self.raw)):
            found = values[np.isin(values, pool)] if len(pool) else values[:0]
            if len(found):
                out.append(Hit(path, where, what, len(found), str(found[0])))
        return out

    def digits(self, path: str, where: str, text: str) -> list[Hit]:
        """The ids written in ``text``: whole numbers, and the raw ids that are not."""
        found = Counter(self.text[m] for m in _NUMBER.findall(text) if m in self.text)
        if self.words:
            found["raw id"] += sum(1 for m in _TOKEN.findall(text) if m in self.words)
        found["raw id"] += sum(text.count(w) for w in self.odd)
        return [Hit(path, where, what, n) for what, n in found.items() if n]


def _pii(path: str, where: str, texts) -> list[Hit]:
    kinds: Counter = Counter()
    for text in texts:
        for span in find_pii(text):
            kinds[span.kind] += 1
    return [Hit(path, where, f"pii:{k}", n) for k, n in kinds.items()]


def _table(path: Path, t: _Targets, pii: bool) -> list[Hit]:
    out, schema = [], pq.read_schema(path)
    for name in schema.names:
        column = pd.read_parquet(path, columns=[name])[name]
        if pd.api.types.is_integer_dtype(column):
            out += t.values(str(path), name, column.to_numpy())
        elif pd.api.types.is_string_dtype(column) or column.dtype == object:
            texts = column.dropna().astype(str).unique()
            out += t.digits(str(path), name, "\n".join(texts))
            out += _pii(str(path), name, texts) if pii else []
    return out


def _arrays(path: Path, t: _Targets) -> list[Hit]:
    loaded = np.load(path, allow_pickle=False)
    named = {k: loaded[k] for k in loaded.files} if hasattr(loaded, "files") else {"": loaded}
    return [h for k, a in named.items() if a.dtype.kind in "iu" for h in t.values(str(path), k, a)]


def _checkpoint(path: Path, t: _Targets) -> list[Hit]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    out, stack = [], [("", ck)]
    while stack:
        key, obj = stack.pop()
        if isinstance(obj, dict):
            stack += [(f"{key}.{k}".strip("."), v) for k, v in obj.items()]
        elif torch.is_tensor(obj) and not obj.is_floating_point() and obj.dim():
            out += t.values(str(path), key, obj.numpy())
        elif isinstance(obj, np.ndarray) and obj.dtype.kind in "iu":
            out += t.values(str(path), key, obj)
    return out


def _bytes(path: Path, t: _Targets) -> list[Hit]:
    """Each id as a little-endian int64 at any of the 8 alignments, and as decimal text."""
    data = path.read_bytes()
    out = []
    for offset in range(8):
        n = (len(data) - offset) // 8
        if n > 0:
            words = np.frombuffer(data, dtype="<i8", count=n, offset=offset)
            out += t.values(str(path), f"int64 at byte offset {offset} mod 8", words)
    return out + t.digits(str(path), "bytes", data.decode("latin-1"))


def audit_file(path: Path, t: _Targets, pii: bool = True) -> list[Hit]:
    suffix = path.suffix
    if suffix == ".parquet":
        return _table(path, t, pii)
    if suffix in (".npy", ".npz"):
        return _arrays(path, t)
    if suffix == ".pt":
        return _checkpoint(path, t) + _bytes(path, t)
    if suffix in TEXT_SUFFIXES:
        text = path.read_text(errors="replace")
        data = pii and suffix in DATA_TEXT  # reports and logs are the project's own numbers
        return t.digits(str(path), "text", text) + (_pii(str(path), "text", [text]) if data else [])
    return _bytes(path, t)


def audit(roots, *, ids=(), raw_ids=(), pii: bool = True, progress=None) -> AuditReport:
    """Every file under ``roots`` searched; see the module notes."""
    tombstoned = [Tombstones.read(r).ids for r in roots]
    all_ids = np.concatenate([np.asarray(ids, dtype=np.int64), *tombstoned])
    t = _Targets(all_ids, raw_ids)
    report = AuditReport(ids=len(t.ids), raw_ids=t.n_raw, pii_checked=pii)
    files = sorted(p for r in roots for p in Path(r).rglob("*")
                   if p.is_file() and p.name != TOMBSTONE_FILE)  # fmt: skip
    for path in progress(files) if progress else files:
        report.files += 1
        report.hits += audit_file(path, t, pii)
    return report
