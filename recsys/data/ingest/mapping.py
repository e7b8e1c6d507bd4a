"""Where a platform's raw tables are and how their columns and values map to the schema.

A ``TableSource`` names one schema table's file (or folder of part files) and the raw column
behind each schema column: ``columns`` maps schema name -> raw name, a schema column left out
keeps its own name, and one mapped to None is absent from the raw table (allowed only for
nullable columns; it reads as missing everywhere). ``values`` maps raw values of a column to
schema values (``event_type: {view_start: enter, buy: purchase}``); raw values it does not
name pass through unchanged, so an unknown event type is still reported by validation.
The optional ``consent`` table maps a platform's consent log the same way: its purpose and
channel labels and its granted values (``yes``/``no``, ``opt_in``/``opt_out``, ``1``/``0``)
through ``values``. A platform whose one label names purpose and channel at once
(``sms_marketing``) maps it to ``purpose:channel`` (``marketing:sms``), with ``channel`` mapped
to None. Time columns read in ``time_unit`` (``s``, ``ms``, ``us``, ``ns``, or ``iso`` for date-time
text such as ``2024-06-03 20:15:00+08:00``, UTC when no offset is given) are converted to the
schema's Unix seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from recsys.data.schema import SCHEMAS, TableSchema

Format = Literal["auto", "parquet", "csv", "jsonl"]
TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("signup_ts",),
    "live_sessions": ("start_ts", "end_ts"),
    "showcase": ("start_ts", "end_ts"),
    "events": ("ts",),
    "consent": ("ts",),
}
LABEL_SEPARATOR = ":"  # a consent purpose label mapped to "marketing:sms" names the channel too
TIME_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000, "iso": 0}


class MappingError(ValueError):
    """A mapping that does not fit the schema or the raw file it is applied to."""


@dataclass(frozen=True)
class TableSource:
    table: str  # schema table name
    path: str  # file or folder, relative to the source folder (or absolute)
    columns: Mapping[str, str | None] = field(default_factory=dict)  # schema -> raw (None: absent)
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # column -> raw -> schema
    time_unit: str = "s"

    def __post_init__(self) -> None:
        if self.table not in SCHEMAS:
            raise MappingError(f"unknown table {self.table!r}; tables: {sorted(SCHEMAS)}")
        schema = SCHEMAS[self.table]
        for name, raw in self.columns.items():
            if name not in schema.names:
                raise MappingError(f"table {self.table!r} has no column {name!r} to map")
            if raw is None and not schema.column(name).nullable and name != schema.key:
                raise MappingError(f"table {self.table!r}: column {name!r} is required")
        for name in self.values:
            if name not in schema.names:
                raise MappingError(f"table {self.table!r}: values given for unknown {name!r}")
        if self.time_unit not in TIME_UNITS:
            raise MappingError(f"table {self.table!r}: time_unit must be one of {list(TIME_UNITS)}")
        if self.labels_name_channels() and self.raw_name("channel") is not None:
            raise MappingError(
                f"table {self.table!r}: values.purpose names channels ('marketing:sms'), so the "
                "channel comes from the label: map columns.channel to null"
            )

    @property
    def schema(self) -> TableSchema:
        return SCHEMAS[self.table]

    def labels_name_channels(self) -> bool:
        """True when consent purpose labels map to ``purpose:channel``."""
        labels = self.values.get("purpose", {}).values() if self.table == "consent" else ()
        return any(LABEL_SEPARATOR in v for v in labels)

    def raw_name(self, column: str) -> str | None:
        return self.columns.get(column, column)

    def generates_key(self) -> bool:
        """True when the table's key is mapped to None: ids are numbered at ingestion."""
        key = self.schema.key
        return key is not None and key in self.columns and self.columns[key] is None

    def location(self, root: Path) -> Path:
        path = Path(self.path)
        return path if path.is_absolute() else root / path


def source_from_dict(table: str, spec: Mapping) -> TableSource:
    known = {"path", "columns", "values", "time_unit"}
    unknown = set(spec) - known
    if unknown:
        raise MappingError(f"table {table!r}: unknown settings {sorted(unknown)}; known {known}")
    values = spec.get("values") or {}
    for column, labels in values.items():
        if any(isinstance(raw, bool) for raw in labels):
            raise MappingError(
                f"table {table!r}: values.{column} has a key read as a boolean: YAML reads yes, "
                "no, on, off unquoted as true / false; quote raw values ('yes': true)"
            )
    return TableSource(
        table=table,
        path=str(spec["path"]),
        columns=dict(spec.get("columns") or {}),
        values={k: {str(a): str(b) for a, b in v.items()} for k, v in values.items()},
        time_unit=str(spec.get("time_unit", "s")),
    )


def apply_mapping(raw: pd.DataFrame, source: TableSource, where: str) -> pd.DataFrame:
    """The raw chunk with schema column names, mapped values and times in seconds; raw columns
    the mapping does not use are kept (validation reports them as ignored)."""
    out: dict[str, pd.Series] = {}
    for column in source.schema.names:
        name = source.raw_name(column)
        if name is None:
            out[column] = pd.Series(pd.NA, index=raw.index, dtype=object)
            continue
        if name not in raw.columns:
            raise MappingError(
                f"{where}: no column {name!r} for {source.table}.{column}; the file has "
                f"{[str(c) for c in raw.columns]} (map it under tables.{source.table}.columns)"
            )
        out[column] = _mapped_values(raw[name], source.values.get(column))
    for column in TIME_COLUMNS.get(source.table, ()):
        out[column] = _to_seconds(out[column], TIME_UNITS[source.time_unit])
    if source.table == "consent":
        out["purpose"], out["channel"] = _purpose_and_channel(out["purpose"], out["channel"])
    used = {source.raw_name(c) for c in source.schema.names}
    rest = {str(c): raw[c] for c in raw.columns if c not in used and c not in out}
    return pd.DataFrame({**out, **rest}, index=raw.index)


def _mapped_values(column: pd.Series, values: Mapping[str, str] | None) -> pd.Series:
    if not values:
        return column
    # Factorising first means only the few distinct raw values are looked up.
    codes, distinct = pd.factorize(column)
    mapped = np.array([values.get(str(v), v) for v in distinct], dtype=object)
    out = np.where(codes >= 0, mapped[np.maximum(codes, 0)] if len(mapped) else None, None)
    return pd.Series(out, index=column.index, dtype="str")


def _purpose_and_channel(purpose: pd.Series, channel: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Mapped ``purpose:channel`` labels split in two; a blank or missing channel is "" (the
    purpose as a whole, every channel of marketing)."""
    text = purpose.astype("str")
    if text.str.contains(LABEL_SEPARATOR, regex=False).any():
        parts = text.str.split(LABEL_SEPARATOR, n=1, expand=True)
        named = parts[1].notna()
        purpose = parts[0].where(text.notna(), purpose)
        channel = parts[1].where(named, channel)
    channel = channel.astype("str").str.strip().fillna("")
    return purpose, channel


def _to_seconds(column: pd.Series, per_second: int) -> pd.Series:
    if per_second == 0:
        return _iso_seconds(column)
    if per_second == 1 or pdt.is_bool_dtype(column.dtype):
        return column
    if pdt.is_integer_dtype(column.dtype):
        return column // per_second
    if pdt.is_float_dtype(column.dtype):
        return np.floor(column / per_second)
    # Text: numbers are converted, anything else stays as read for validation to report.
    numbers = pd.to_numeric(column, errors="coerce")
    return column.astype(object).where(numbers.isna(), np.floor(numbers / per_second))


def _iso_seconds(column: pd.Series) -> pd.Series:
    """Date-time text as Unix seconds; text that is no date-time stays as read, for validation
    to report."""
    stamps = pd.to_datetime(column, utc=True, errors="coerce", format="ISO8601")
    seconds = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return column.astype(object).where(stamps.isna(), seconds.astype("Int64").astype(object))
