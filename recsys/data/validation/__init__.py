"""Validation of the live-commerce tables at the boundary, before anything else reads them.

``validate`` checks the six tables in dependency order: entities first (users, streamers,
products), then live_sessions (-> streamers), showcase (-> sessions, products) and last
events (-> users, sessions, streamers, products). References are resolved against the rows
accepted so far, so rejections cascade: an event whose user was rejected is rejected too, as
pointing at an unknown user. The checks themselves live in ``recsys.data.validation.checks``.

Two modes:

* ``strict`` raises ``ValidationError`` on the first bad row: the first table (in check order)
  with a fault, its lowest faulty row (0-based position in that table), and that row's first
  fault in check order.
* ``lenient`` keeps going: faulty rows are set aside, with every reason, in
  ``quarantine_dir/<table>.parquet`` (original columns, text where a column held mixed values,
  plus ``_row`` and ``_reason``), and the accepted rows come back cast to the schema dtypes.
  For every table, accepted + rejected == input.

A table lacking a schema column is a structural fault, not a row fault: it raises in both modes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.schema import SCHEMAS, TABLES, TableSchema
from recsys.data.tables import LiveCommerceTables, load_tables
from recsys.data.validation.checks import Finding, Known, Parsed, check_table
from recsys.data.validation.coercion import clean_frame, parse_table

Mode = Literal["strict", "lenient"]
CHECK_ORDER = ("users", "streamers", "products", "live_sessions", "showcase", "events")


class ValidationError(ValueError):
    """A table, row and field that break the data model, and why."""

    def __init__(
        self,
        *,
        source: str,
        table: str,
        row: int | None,
        field: str,
        reason: str,
        detail: str = "",
        key: str | None = None,
    ) -> None:
        self.source, self.table, self.row, self.field = source, table, row, field
        self.reason, self.detail, self.key = reason, detail, key
        where = table if row is None else f"{table} row {row}" + (f" ({key})" if key else "")
        tail = f" {detail}" if detail else ""
        super().__init__(f"{source}: {where}: field {field!r}: {reason}{tail}")


@dataclass(frozen=True)
class TableCounts:
    input: int
    accepted: int
    rejected: int
    reasons: dict[str, int]  # "field: reason" -> rows; a row with several reasons counts in each


@dataclass
class ValidationReport:
    tables: LiveCommerceTables  # the accepted rows, cast to the schema dtypes
    counts: dict[str, TableCounts]
    mode: Mode
    source: str
    rejected: dict[str, pd.DataFrame]  # the quarantined rows per table, also kept in memory
    quarantine: dict[str, Path] = field(default_factory=dict)  # table -> file written
    ignored_columns: dict[str, list[str]] = field(default_factory=dict)  # not in the schema

    @property
    def n_rejected(self) -> int:
        return sum(c.rejected for c in self.counts.values())

    def summary(self) -> str:
        total = sum(c.input for c in self.counts.values())
        lines = [
            f"validated {self.source} ({self.mode}): {self.n_rejected} of {total} rows rejected"
        ]
        lines.append(f"  {'table':<14}{'input':>10}{'accepted':>10}{'rejected':>10}")
        for name, c in self.counts.items():
            lines.append(f"  {name:<14}{c.input:>10}{c.accepted:>10}{c.rejected:>10}")
            lines += [f"      {key}: {n}" for key, n in c.reasons.items()]
        lines += [
            f"  quarantine: {p}" for t, p in self.quarantine.items() if self.counts[t].rejected
        ]
        lines += [f"  ignored columns in {t}: {cols}" for t, cols in self.ignored_columns.items()]
        return "\n".join(lines)


def validate(
    tables: LiveCommerceTables,
    *,
    mode: Mode = "strict",
    quarantine_dir: str | Path | None = None,
    source: str = "<memory>",
) -> ValidationReport:
    """Check every table (see the module notes); quarantine files are written whenever
    ``quarantine_dir`` is given, one per table, empty where nothing was rejected."""
    if mode not in ("strict", "lenient"):
        raise ValueError(f"mode must be 'strict' or 'lenient', not {mode!r}")
    accepted: dict[str, pd.DataFrame] = {}
    counts, rejected, ignored = {}, {}, {}
    for name in CHECK_ORDER:
        raw = _table_frame(tables, TABLES[name], source)
        result = check_frame(name, raw, Known.from_accepted(accepted), mode=mode, source=source)
        accepted[name], rejected[name] = result.accepted, result.rejected
        counts[name] = result.counts
        if result.ignored:
            ignored[name] = result.ignored
    paths = {} if quarantine_dir is None else _write_quarantine(rejected, Path(quarantine_dir))
    return ValidationReport(
        tables=LiveCommerceTables(**accepted),
        counts=counts,
        mode=mode,
        source=source,
        rejected=rejected,
        quarantine=paths,
        ignored_columns=ignored,
    )


@dataclass(frozen=True)
class FrameResult:
    """One table (or one chunk of it) checked: accepted rows, quarantined rows, counts."""

    accepted: pd.DataFrame  # cast to the schema dtypes
    rejected: pd.DataFrame  # original values, ``_row`` (offset applied) and ``_reason``
    counts: TableCounts
    ignored: list[str]  # columns not in the schema


# Findings a caller adds once the table's own checks ran: (parsed columns, rows flagged so far).
ExtraChecks = Callable[[Parsed, np.ndarray], list[Finding]]


def check_frame(
    name: str,
    raw: pd.DataFrame,
    known: Known,
    *,
    mode: Mode,
    source: str,
    row_offset: int | np.ndarray = 0,
    before: Sequence[Finding] = (),
    after: ExtraChecks | None = None,
) -> FrameResult:
    """Check one table's rows against ``known`` (the accepted rows of the tables it refers to).

    ``raw`` may be a chunk of a larger file: ``row_offset`` is the file row of its first row
    (or the file row of each of its rows), so strict errors and quarantined ``_row`` values
    name rows of the file. ``before`` holds
    faults found while reading (an unreadable line); ``after`` adds checks that need state
    beyond the chunk (a key seen in an earlier chunk).
    """
    schema = SCHEMAS[name]
    raw = raw.reset_index(drop=True)
    parsed = parse_table(raw, schema)
    findings = [*before, *check_table(name, raw, parsed, known)]
    if after is not None:
        flagged = np.zeros(len(raw), dtype=bool)
        for f in findings:
            flagged[f.rows] = True
        findings += [f for f in after(parsed, flagged) if len(f.rows)]
    if findings and mode == "strict":
        raise _first_error(findings, raw, schema, source, row_offset)
    bad = np.zeros(len(raw), dtype=bool)
    for f in findings:
        bad[f.rows] = True
    return FrameResult(
        accepted=clean_frame(raw, parsed, ~bad, schema),
        rejected=_quarantine_frame(raw, findings, row_offset),
        counts=_counts(len(raw), int(bad.sum()), findings),
        ignored=[str(c) for c in raw.columns if c not in schema.names],
    )


def validate_dir(
    data_dir: str | Path, *, mode: Mode = "strict", quarantine_dir: str | Path | None = None
) -> ValidationReport:
    """Load a world folder (``recsys.data.tables.load_tables``) and validate it."""
    tables = load_tables(data_dir)
    return validate(tables, mode=mode, quarantine_dir=quarantine_dir, source=str(data_dir))


def _table_frame(tables: LiveCommerceTables, schema: TableSchema, source: str) -> pd.DataFrame:
    df = tables.table(schema.name)
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"{source}: table {schema.name!r} is a {type(df).__name__}, not a DataFrame"
        )
    missing = [c for c in schema.names if c not in df.columns]
    if missing:
        detail = f"(missing columns {missing})" if len(missing) > 1 else ""
        raise ValidationError(
            source=source, table=schema.name, row=None, field=missing[0],
            reason="missing column", detail=detail,
        )  # fmt: skip
    return df.reset_index(drop=True)


def _file_rows(rows: np.ndarray, offset: int | np.ndarray) -> np.ndarray:
    return np.asarray(offset)[rows] if np.ndim(offset) else rows + offset


def _first_error(
    findings: list[Finding],
    raw: pd.DataFrame,
    schema: TableSchema,
    source: str,
    offset: int | np.ndarray = 0,
) -> ValidationError:
    row = min(int(f.rows[0]) for f in findings)
    for f in findings:  # findings are in check order: the first one holding the row wins
        at = int(np.searchsorted(f.rows, row))
        if at < len(f.rows) and f.rows[at] == row:
            break
    key = None
    if schema.key is not None:
        value = raw[schema.key].iloc[row]
        key = f"{schema.key}={value!r}" if isinstance(value, str) else f"{schema.key}={value}"
    return ValidationError(
        source=source, table=schema.name, row=int(_file_rows(np.array([row]), offset)[0]),
        field=f.field,
        reason=f.reason, detail=str(f.details[at]), key=key,
    )  # fmt: skip


def _counts(n_input: int, n_rejected: int, findings: list[Finding]) -> TableCounts:
    reasons: dict[str, int] = {}
    for f in findings:
        reasons[f.key] = reasons.get(f.key, 0) + len(f.rows)
    return TableCounts(n_input, n_input - n_rejected, n_rejected, reasons)


def _quarantine_frame(
    raw: pd.DataFrame, findings: list[Finding], offset: int | np.ndarray = 0
) -> pd.DataFrame:
    """One row per rejected input row: its original values, position and every reason."""
    if not findings:
        empty = raw.iloc[:0].copy()
        empty["_row"] = pd.Series(dtype=np.int64)
        empty["_reason"] = pd.Series(dtype="str")
        return _as_storable(empty)
    rows, joined = _joined_reasons(findings)
    out = raw.iloc[rows].reset_index(drop=True)
    out["_row"] = _file_rows(rows, offset)
    out["_reason"] = pd.Series(joined, dtype="str")
    return _as_storable(out)


def _joined_reasons(findings: list[Finding]) -> tuple[np.ndarray, np.ndarray]:
    """Rejected rows (ascending) and each one's reasons joined by '; ' in check order."""
    texts = [np.where(f.details == "", f.key, f.key + " " + f.details) for f in findings]
    rows = np.concatenate([f.rows for f in findings])
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    text = np.concatenate(texts).astype(object)[order]
    rejected, first, n_reasons = np.unique(rows, return_index=True, return_counts=True)
    joined = text[first]
    group = np.repeat(np.arange(len(rejected)), n_reasons)
    rank = np.arange(len(rows)) - first[group]  # position of a reason among its row's reasons
    for k in range(1, int(n_reasons.max())):
        at = rank == k
        joined[group[at]] = joined[group[at]] + "; " + text[at]
    return rejected.astype(np.int64), joined


def _as_storable(df: pd.DataFrame) -> pd.DataFrame:
    """Mixed-value (object) columns as text, so that any rejected value can be written."""
    out = df.copy()
    for name in out.columns:
        if out[name].dtype == object:
            out[name] = out[name].astype("str")
    return out


def _write_quarantine(rejected: dict[str, pd.DataFrame], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in rejected.items():
        paths[name] = out_dir / f"{name}.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), paths[name])
    return paths
