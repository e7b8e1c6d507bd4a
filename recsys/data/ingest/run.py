"""A platform's raw tables -> a world folder, chunk by chunk (what ``recsys-ingest`` runs).

Each table is read in chunks (``recsys.data.ingest.readers``), its columns and values mapped to
the schema (``recsys.data.ingest.mapping``), user ids pseudonymised, and every chunk validated
against the rows accepted so far (``recsys.data.validation.check_frame``): entity tables first,
then events, then the optional consent log (``recsys.data.ingest.consent``). Events never sit
in memory beyond one chunk: each chunk's accepted rows become an ``events/part-*.parquet`` file
and its rejected rows a quarantine file, so memory follows the chunk size and the entity
tables, not the event log.

The folder written is the one ``recsys-simulate`` writes (tables, ``events/``, ``vocab/``,
``manifest.json``; no ``truth/``), plus ``quarantine/batch-<n>/`` and the ingestion state.
Running again on the same folder appends: entity rows whose id is already there are kept as
they were (counted as accepted), new ids join the vocabularies after the old ones (which keep
their indices), and new event parts follow the old ones. New parts are written aside and moved
in only when the whole run succeeded, so a failed run adds no events.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from recsys.data.ingest.consent import held_decisions, held_index, held_mask, write_decisions
from recsys.data.ingest.mapping import MappingError, TableSource, apply_mapping
from recsys.data.ingest.pseudonyms import Pseudonymiser
from recsys.data.ingest.readers import Chunk, ReadOptions, read_chunks, table_files, total_rows
from recsys.data.ingest.report import IngestReport
from recsys.data.ingest.state import EventState, IdRanges
from recsys.data.schema import EVENT_TYPES, TABLES
from recsys.data.tables import (
    ENTITY_TABLES,
    SCHEMA_VERSION,
    load_tables,
    read_manifest,
    write_table,
)
from recsys.data.validation import FrameResult, Mode, TableCounts, check_frame
from recsys.data.validation.checks import Finding, Known, Parsed, finding
from recsys.data.validation.coercion import parse_column
from recsys.data.vocab import ENTITY_IDS, Vocab, load_vocabs, save_vocabs

GENERATOR = "recsys.ingest"
# glibc's malloc_trim returns freed heap pages; elsewhere (musl, macOS) there is none to call.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None
if _LIBC is not None and not hasattr(_LIBC, "malloc_trim"):
    _LIBC = None
log = logging.getLogger(__name__)
# Event columns with few distinct values per chunk: dictionary encoding pays only for these.
DICTIONARY = ["event_type", "session_id", "streamer_id", "product_id", "comment"]


@dataclass(frozen=True)
class IngestSettings:
    source: str  # folder the table paths are relative to
    out_dir: str  # the world folder written, or appended to
    tables: Mapping[str, TableSource]  # every schema table -> where and how to read it
    format: str = "auto"  # parquet | csv | jsonl | auto (by suffix)
    mode: Mode = "lenient"
    chunk_rows: int = 1_000_000
    pseudonymise: bool = True  # False: user ids are already pseudonyms (integers)
    key: str | None = None  # pseudonymisation key; default $RECSYS_PSEUDONYM_KEY
    delimiter: str = ","
    progress: bool = True
    # Forgotten users (pseudonyms: recsys.privacy.tombstones): their rows are dropped right
    # after pseudonymisation, counted in ``IngestReport.tombstoned``, never validated, stored
    # or quarantined, so raw files ingested again do not bring them back.
    forgotten: tuple[int, ...] = ()
    # Free text (comments) goes through this before it is checked or written: PII scrubbing
    # (``recsys.privacy.pii.scrub``; recsys-ingest ``scrub_pii=true``). None: kept as read.
    text_filter: Callable[[str], str] | None = None

    def __post_init__(self) -> None:
        missing = [t for t in TABLES if t not in self.tables]
        if missing:
            raise MappingError(f"ingest: no source for tables {missing} (set tables.<name>.path)")
        for name, src in self.tables.items():
            if src.generates_key() and name != "events":
                raise MappingError(f"ingest: only events may be numbered at ingestion, not {name}")
        if self.mode not in ("strict", "lenient") or self.chunk_rows < 1:
            raise ValueError(f"ingest: mode strict|lenient and chunk_rows >= 1, got {self}")


@dataclass
class _Run:
    settings: IngestSettings
    out: Path
    batch: int
    pseudonyms: Pseudonymiser | None
    previous: dict[str, pd.DataFrame] | None  # the world's entity tables before this run
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # accepted so far
    counts: dict[str, TableCounts] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)
    peak_rows: int = 0
    tombstoned: dict[str, int] = field(default_factory=dict)
    forgotten: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    consent: pd.DataFrame | None = None  # the world's decisions after this run (None: untouched)

    @property
    def quarantine(self) -> Path:
        return self.out / "quarantine" / f"batch-{self.batch:03d}"

    @property
    def incoming(self) -> Path:
        return self.out / "events" / f".incoming-{os.getpid()}"


def ingest_files(settings: IngestSettings) -> IngestReport:
    """Ingest (or append) the raw tables of ``settings``; see the module notes."""
    began = time.perf_counter()
    out = Path(settings.out_dir)
    previous, manifest = _previous_world(out)
    batch = len(manifest.get("batches", [])) if manifest else 0
    pseudonyms = Pseudonymiser(settings.key) if settings.pseudonymise else None
    run = _Run(settings, out, batch, pseudonyms, previous,
               forgotten=np.unique(np.asarray(settings.forgotten, dtype=np.int64)))  # fmt: skip
    state = EventState.load(out) if previous is not None else EventState.empty()
    stages, cpu = {}, time.process_time()
    try:
        for name in ENTITY_TABLES:
            run.tables[name] = _entity_table(run, name)
            _log_table(run, name)
        stages["entities"] = time.perf_counter() - began
        stages["entities_cpu"] = time.process_time() - cpu
        events = _events(run, state)
        _log_table(run, "events")
        stages["events"] = time.perf_counter() - began - stages["entities"]
        stages["events_cpu"] = time.process_time() - cpu - stages["entities_cpu"]
        run.consent = _consent(run)
        stages["consent"] = time.perf_counter() - began - stages["entities"] - stages["events"]
    except BaseException:
        shutil.rmtree(run.incoming, ignore_errors=True)
        shutil.rmtree(run.quarantine, ignore_errors=True)
        raise
    _commit(run, state, events, manifest)
    seconds = time.perf_counter() - began
    stages["commit"] = seconds - stages["entities"] - stages["events"] - stages["consent"]
    return IngestReport(out, run.counts, run.present, run.quarantine, previous is not None,
                        round(seconds, 3), run.peak_rows, batch,
                        {k: round(v, 3) for k, v in stages.items()}, run.tombstoned)  # fmt: skip


def _log_table(run: _Run, name: str) -> None:
    c = run.counts[name]
    log.info("%s: %d rows read, %d accepted (%d already there), %d rejected", name, c.input,
             c.accepted, run.present.get(name, 0), c.rejected)  # fmt: skip


def _previous_world(out: Path) -> tuple[dict[str, pd.DataFrame] | None, dict | None]:
    """An ingested world's entity tables and manifest; (None, None) for a new or empty folder."""
    if not (out / "manifest.json").is_file():
        if out.is_dir() and any(p.suffix == ".parquet" for p in out.rglob("*")):
            raise FileExistsError(f"{out} holds tables but no manifest; ingest into a new folder")
        return None, None
    manifest = read_manifest(out)
    if manifest.get("generator") != GENERATOR:
        raise FileExistsError(
            f"{out} holds a world made by {manifest.get('generator')!r}; only a folder written by "
            "recsys-ingest can be appended to"
        )
    tables = load_tables(out)
    return {name: tables.table(name) for name in ENTITY_TABLES}, manifest


def _chunks(run: _Run, name: str):
    src = run.settings.tables[name]
    ints = [c.name for c in src.schema.columns if c.kind == "int"]
    text = tuple(raw for raw in map(src.raw_name, ints) if raw is not None)
    options = ReadOptions(run.settings.chunk_rows, run.settings.delimiter, text)
    return read_chunks(src.location(Path(run.settings.source)), run.settings.format, options)


@dataclass
class _Rows:
    """One chunk in schema columns, the file row of each row, and the rows that could not be
    read (with why)."""

    frame: pd.DataFrame
    file: Path
    file_rows: np.ndarray
    unreadable: np.ndarray  # (n,) object: "" or the reason

    def take(self, keep: np.ndarray) -> _Rows:
        return _Rows(self.frame.loc[keep].reset_index(drop=True), self.file,
                     self.file_rows[keep], self.unreadable[keep])  # fmt: skip

    def unreadable_finding(self) -> list[Finding]:
        bad = self.unreadable != ""
        if not bad.any():
            return []
        why = self.unreadable.astype(str)  # plain text, not quoted like a raw value
        return [finding("row", "unreadable", bad, "(", why, ")")]


def _filtered(column: pd.Series, text_filter: Callable[[str], str]) -> pd.Series:
    """``text_filter`` once per distinct text of the chunk (comments repeat); missing stay so."""
    codes, texts = pd.factorize(column)
    done = [text_filter(str(t)) for t in texts]
    if done == [str(t) for t in texts]:
        return column  # nothing changed: no new column
    done = np.array([*done, None], dtype=object)
    return pd.Series(done[codes], index=column.index, dtype=column.dtype)  # code -1: None


def _prepare(run: _Run, name: str, chunk: Chunk, first_id: int) -> _Rows:
    """The chunk in schema columns, numbered when the table has no ids, user ids pseudonymised."""
    src = run.settings.tables[name]
    frame = apply_mapping(chunk.frame, src, str(chunk.file))
    if src.generates_key():
        frame[src.schema.key] = np.arange(first_id, first_id + len(frame), dtype=np.int64)
    if run.pseudonyms is not None and "user_id" in src.schema.names:
        frame["user_id"] = run.pseudonyms(frame["user_id"])
    if run.settings.text_filter is not None and "comment" in src.schema.names:
        frame["comment"] = _filtered(frame["comment"], run.settings.text_filter)
    unreadable = np.full(len(frame), "", dtype=object)
    for row, why in chunk.unreadable.items():
        unreadable[row] = why
    rows = chunk.first_row + np.arange(len(frame), dtype=np.int64)
    out = _Rows(frame, chunk.file, rows, unreadable)
    if len(run.forgotten) and "user_id" in frame.columns:
        gone = np.isin(pd.to_numeric(frame["user_id"], errors="coerce"), run.forgotten)
        run.tombstoned[name] = run.tombstoned.get(name, 0) + int(gone.sum())
        out = out.take(~gone) if gone.any() else out
    return out


def _check(run: _Run, name: str, rows: _Rows, known: Known, after) -> FrameResult:
    result = check_frame(name, rows.frame, known,
                         mode=run.settings.mode, source=str(rows.file), row_offset=rows.file_rows,
                         before=rows.unreadable_finding(), after=after)  # fmt: skip
    run.counts[name] = _add_counts(run.counts.get(name), result.counts)
    run.peak_rows = max(run.peak_rows, len(rows.frame))
    if len(result.rejected):
        path = run.quarantine / name / f"{rows.file.stem}-{int(rows.file_rows[0]):012d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        rejected = result.rejected.assign(_file=str(rows.file))
        pq.write_table(pa.Table.from_pandas(rejected, preserve_index=False), path)
    return result


def _add_counts(total: TableCounts | None, more: TableCounts) -> TableCounts:
    if total is None:
        return more
    reasons = dict(total.reasons)
    for key, n in more.reasons.items():
        reasons[key] = reasons.get(key, 0) + n
    return TableCounts(total.input + more.input, total.accepted + more.accepted,
                       total.rejected + more.rejected, reasons)  # fmt: skip


def _entity_table(run: _Run, name: str) -> pd.DataFrame:
    """Every chunk of one entity table checked; the world's old rows plus the new accepted."""
    key = TABLES[name].key
    old = run.previous[name] if run.previous is not None else None
    seen = IdRanges.empty()
    parts = [old] if old is not None else []
    run.counts[name] = TableCounts(0, 0, 0, {})
    known = Known.from_accepted(run.tables)
    for chunk in _chunks(run, name):
        rows = _drop_present(run, name, _prepare(run, name, chunk, 0), old)
        result = _check(run, name, rows, known, None if key is None else _seen_key(key, seen))
        if key is not None:
            seen.add(result.accepted[key].to_numpy(np.int64))
        parts.append(result.accepted)
    return pd.concat(parts, ignore_index=True)


def _seen_key(key: str, seen: IdRanges):
    def check(parsed: Parsed, flagged: np.ndarray) -> list[Finding]:
        col = parsed[key]
        mask = col.present & ~flagged & seen.contains(col.values)
        return [finding(key, f"duplicate {key}", mask, col.values, " (earlier chunk)")]

    return check


def _drop_present(run: _Run, name: str, rows: _Rows, old: pd.DataFrame | None) -> _Rows:
    """Rows whose id (showcase: session, product and start) the world already holds leave the
    chunk, counted as accepted and present; the rest keep their file rows."""
    if old is None or not len(rows.frame):
        return rows
    cols = [TABLES[name].key] if TABLES[name].key else ["session_id", "product_id", "start_ts"]
    parsed = [parse_column(rows.frame[c], "int") for c in cols]
    readable = np.logical_and.reduce([p.present for p in parsed]) & (rows.unreadable == "")
    keys = pd.MultiIndex.from_arrays([p.values for p in parsed])
    held = pd.MultiIndex.from_frame(old[cols].astype("int64"))
    return _set_aside(run, name, rows, readable & keys.isin(held))


def _set_aside(run: _Run, name: str, rows: _Rows, there: np.ndarray) -> _Rows:
    """The rows not ``there``; those are counted as accepted and already present."""
    n = int(there.sum())
    if n:
        run.present[name] = run.present.get(name, 0) + n
        run.counts[name] = _add_counts(run.counts.get(name), TableCounts(n, n, 0, {}))
    return rows.take(~there) if n else rows


def _consent(run: _Run) -> pd.DataFrame | None:
    """The world's consent decisions, then this run's accepted ones (``recsys.data.ingest.
    consent``); None when the mapping has no consent table (the world's file stays as it is)."""
    if "consent" not in run.settings.tables:
        return None
    held = held_decisions(run.out)
    parts, known, index = [held], Known.from_accepted({}), held_index(held)
    run.counts["consent"] = TableCounts(0, 0, 0, {})
    for chunk in _chunks(run, "consent"):
        rows = _prepare(run, "consent", chunk, 0)
        there = held_mask(rows.frame, index) & (rows.unreadable == "")
        rows = _set_aside(run, "consent", rows, there)
        parts.append(_check(run, "consent", rows, known, None).accepted)
    _log_table(run, "consent")
    return pd.concat(parts, ignore_index=True)


def _events(run: _Run, state: EventState) -> dict:
    """Every events chunk checked and written aside; per-type counts, time range and parts."""
    src = run.settings.tables["events"]
    location = src.location(Path(run.settings.source))
    total = total_rows(table_files(location, run.settings.format), run.settings.format)
    run.counts["events"] = TableCounts(0, 0, 0, {})
    types = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    lo, hi, parts = None, None, []
    bar = tqdm(total=total, unit="rows", desc="events", disable=not run.settings.progress)
    known = Known.from_accepted(run.tables)
    for chunk in _chunks(run, "events"):
        rows = _prepare(run, "events", chunk, state.next_id)
        state.next_id += len(rows.frame) if src.generates_key() else 0
        result = _check(run, "events", rows, known, state.findings)
        accepted = result.accepted
        state.update(accepted)
        if len(accepted):
            parts.append(run.incoming / f"part-{len(parts):05d}.parquet")
            write_table(accepted, parts[-1], TABLES["events"], dictionary=DICTIONARY)
            codes = pd.Index(EVENT_TYPES).get_indexer(accepted["event_type"])
            types += np.bincount(codes, minlength=len(EVENT_TYPES))
            ts = accepted["ts"].to_numpy(np.int64)
            lo = int(ts.min()) if lo is None else min(lo, int(ts.min()))
            hi = int(ts.max()) if hi is None else max(hi, int(ts.max()))
        bar.update(len(rows.frame))
        del rows, result, accepted
        release_memory()
    bar.close()
    counts = dict(zip(EVENT_TYPES, types.tolist(), strict=True))
    return {"event_counts": counts, "time_range": [lo, hi], "parts": parts}


def release_memory() -> None:
    """Hand memory freed by the last chunk back to the system (Arrow's pool, then the C heap),
    so that resident memory follows the chunk size rather than creeping with the input."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _commit(run: _Run, state: EventState, events: dict, manifest: dict | None) -> None:
    """Entity tables, the new event parts, vocabularies, state and manifest, in that order
    (the manifest last: a folder without one is never read as a world)."""
    out = run.out
    for name in ENTITY_TABLES:
        write_table(run.tables[name], out / f"{name}.parquet", TABLES[name])
    first = len(list((out / "events").glob("part-*.parquet")))
    for i, part in enumerate(events["parts"]):
        part.rename(out / "events" / f"part-{first + i:05d}.parquet")
    shutil.rmtree(run.incoming, ignore_errors=True)
    (out / "events").mkdir(parents=True, exist_ok=True)
    save_vocabs(_grown_vocabs(run, out), out / "vocab")
    if run.consent is not None:
        write_decisions(run.consent, out)
    state.save(out)
    record = _manifest(run, events, manifest, first + len(events["parts"]))
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(out / "manifest.json")


def _grown_vocabs(run: _Run, out: Path) -> dict[str, Vocab]:
    old = load_vocabs(out / "vocab") if run.previous is not None else {}
    vocabs = {}
    for entity, (table, column) in ENTITY_IDS.items():
        ids = run.tables[table][column].to_numpy(np.int64)
        vocabs[entity] = old[entity].extend(ids) if entity in old else Vocab.build(entity, ids)
    return vocabs


def _manifest(run: _Run, events: dict, old: dict | None, n_parts: int) -> dict:
    old = old or {}
    counts = {name: len(run.tables[name]) for name in ENTITY_TABLES}
    counts["events"] = old.get("counts", {}).get("events", 0) + run.counts["events"].accepted
    consent = len(run.consent) if run.consent is not None else old.get("counts", {}).get("consent")
    counts.update({} if consent is None else {"consent": consent})
    by_type = {t: old.get("event_counts", {}).get(t, 0) + n
               for t, n in events["event_counts"].items()}  # fmt: skip
    ranges = [r for r in (old.get("time_range"), events["time_range"]) if r and r[0] is not None]
    span = [min(r[0] for r in ranges), max(r[1] for r in ranges)] if ranges else [None, None]
    batch = {
        "source": str(run.settings.source),
        "mode": run.settings.mode,
        "pseudonymised": run.settings.pseudonymise,
        "validation": {n: dataclasses.asdict(c) for n, c in run.counts.items()},
        "already_present": run.present,
    }
    return {
        "generator": GENERATOR,
        "schema_version": SCHEMA_VERSION,
        "counts": counts,
        "event_counts": by_type,
        "event_parts": n_parts,
        "time_range": span,
        "batches": [*old.get("batches", []), batch],
    }
