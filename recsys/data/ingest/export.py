"""A world folder written out as a platform might hold it: other column names, other event
names, CSV / JSON Lines / Parquet, times in another unit. Returns the ingestion mapping that
reads it back, so a round trip (export -> ``ingest_files``) can be checked against the original
and a new user has a worked example of a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from recsys.data.ingest.mapping import LABEL_SEPARATOR, TIME_COLUMNS, TIME_UNITS
from recsys.data.tables import ENTITY_TABLES, load_tables

WRITERS = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}


def export_world(
    world: str | Path,
    out_dir: str | Path,
    *,
    format: str = "csv",
    columns: Mapping[str, Mapping[str, str]] | None = None,
    event_names: Mapping[str, str] | None = None,
    time_unit: str = "s",
    events_per_file: int = 0,
) -> dict:
    """Write every table of ``world`` under ``out_dir`` (events as a folder of part files of
    ``events_per_file`` rows, 0: one file); ``columns`` renames (table -> schema -> raw) and
    ``event_names`` renames event types (schema -> raw). Returns the ``tables`` section of an
    ingest config that maps the export back."""
    if format not in WRITERS:
        raise ValueError(f"export format must be one of {list(WRITERS)}, not {format!r}")
    tables, out = load_tables(world), Path(out_dir)
    columns, event_names = columns or {}, dict(event_names or {})
    mapping = {}
    for name in (*ENTITY_TABLES, "events"):
        renames = dict(columns.get(name, {}))
        frame = _in_unit(tables.table(name), name, TIME_UNITS[time_unit])
        if name == "events":
            frame = frame.assign(event_type=frame["event_type"].replace(event_names))
        frame = frame.rename(columns=renames)
        path = _write(frame, out, name, format, events_per_file if name == "events" else 0)
        mapping[name] = {"path": str(path.relative_to(out)), "columns": renames,
                         "time_unit": time_unit}  # fmt: skip
    mapping["events"]["values"] = {"event_type": {raw: s for s, raw in event_names.items()}}
    return mapping


def export_consent(
    decisions: pd.DataFrame,
    out_dir: str | Path,
    *,
    format: str = "csv",
    columns: Mapping[str, str | None],
    labels: Mapping[str, str],
    granted: Mapping[bool, str],
    time_unit: str = "s",
) -> dict:
    """Consent decisions (``recsys.data.schema.CONSENT`` columns) written as ``consent`` under
    ``out_dir`` the way a platform might keep them: ``columns`` renames (``channel`` to None:
    no channel column, the label names it), ``labels`` gives the platform's label of each
    purpose (or ``purpose:channel``), ``granted`` its value for True and False. Returns the
    ``consent`` section of an ingest config that maps the file back."""
    in_label = columns.get("channel", "channel") is None
    keys = decisions["purpose"].astype(str)
    if in_label:
        channel = decisions["channel"].fillna("").astype(str)
        keys = keys.where(channel == "", keys + LABEL_SEPARATOR + channel)
    unknown = sorted(set(keys) - set(labels))
    if unknown:
        raise ValueError(f"export_consent: no platform label for {unknown}")
    frame = pd.DataFrame({"user_id": decisions["user_id"], "purpose": keys.map(labels)})
    if not in_label:
        frame["channel"] = decisions["channel"]
    frame["granted"] = decisions["granted"].map({bool(k): v for k, v in granted.items()})
    frame["ts"] = decisions["ts"] * TIME_UNITS[time_unit]
    renames = {k: v for k, v in columns.items() if v is not None}
    path = _write(frame.rename(columns=renames), Path(out_dir), "consent", format, 0)
    values = {"purpose": {raw: key for key, raw in labels.items()},
              "granted": {raw: bool(k) for k, raw in granted.items()}}  # fmt: skip
    return {"path": str(path.relative_to(out_dir)), "columns": dict(columns), "values": values,
            "time_unit": time_unit}  # fmt: skip


def _in_unit(frame: pd.DataFrame, table: str, per_second: int) -> pd.DataFrame:
    cols = {c: frame[c] * per_second for c in TIME_COLUMNS.get(table, ())}
    return frame.assign(**cols) if cols else frame


def _write(frame: pd.DataFrame, out: Path, name: str, fmt: str, per_file: int) -> Path:
    if not per_file:
        path = out / f"{name}{WRITERS[fmt]}"
        _write_one(frame, path, fmt)
        return path
    folder = out / name
    for i, start in enumerate(range(0, max(len(frame), 1), per_file)):
        part = folder / f"part-{i:05d}{WRITERS[fmt]}"
        _write_one(frame.iloc[start : start + per_file], part, fmt)
    return folder


def _write_one(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path, index=False)
