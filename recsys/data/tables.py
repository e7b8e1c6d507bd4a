"""The six live-commerce tables as one object, and their on-disk layout.

Layout of a world folder::

    users.parquet  streamers.parquet  products.parquet  live_sessions.parquet  showcase.parquet
    events/part-00000.parquet ...      (events in time order, written in chunks)
    truth/...                          (planted ground truth, synthetic worlds only)
    manifest.json                      (what made it, counts, schema version)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.schema import TABLES, TableSchema, pandas_dtype

SCHEMA_VERSION = 1
ENTITY_TABLES = ("users", "streamers", "products", "live_sessions", "showcase")


@dataclass
class LiveCommerceTables:
    users: pd.DataFrame
    streamers: pd.DataFrame
    products: pd.DataFrame
    live_sessions: pd.DataFrame
    showcase: pd.DataFrame
    events: pd.DataFrame

    def table(self, name: str) -> pd.DataFrame:
        return getattr(self, name)


def conform(df: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """The frame with exactly the schema's columns, in order, cast to the schema's dtypes."""
    missing = [c for c in schema.names if c not in df.columns]
    if missing:
        raise ValueError(f"table {schema.name!r}: missing columns {missing}")
    return df[schema.names].astype({c.name: pandas_dtype(c) for c in schema.columns})


def write_table(
    df: pd.DataFrame, path: str | Path, schema: TableSchema, dictionary: bool | list[str] = True
) -> None:
    """Write one table (or one chunk of events) deterministically; ``dictionary`` names the
    columns worth dictionary encoding (all by default; ids and times gain nothing from it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(conform(df, schema), preserve_index=False)
    pq.write_table(table, path, compression="zstd", use_dictionary=dictionary)


def read_table(path: str | Path, schema: TableSchema) -> pd.DataFrame:
    """Read a table file or a folder of part files, as stored (validation checks dtypes)."""
    path = Path(path)
    if path.is_dir():
        parts = sorted(path.glob("*.parquet"))
        if not parts:
            return pd.DataFrame(
                {c: pd.Series(dtype=pandas_dtype(schema.column(c))) for c in schema.names}
            )
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return pd.read_parquet(path)


def save_tables(tables: LiveCommerceTables, out_dir: str | Path) -> None:
    out = Path(out_dir)
    for name in ENTITY_TABLES:
        write_table(tables.table(name), out / f"{name}.parquet", TABLES[name])
    write_table(tables.events, out / "events" / "part-00000.parquet", TABLES["events"])


def load_tables(data_dir: str | Path) -> LiveCommerceTables:
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no world folder at {root}")
    frames = {name: read_table(root / f"{name}.parquet", TABLES[name]) for name in ENTITY_TABLES}
    events_path = root / "events"
    if not events_path.exists():
        events_path = root / "events.parquet"
    frames["events"] = read_table(events_path, TABLES["events"])
    return LiveCommerceTables(**frames)


def read_manifest(data_dir: str | Path) -> dict:
    return json.loads((Path(data_dir) / "manifest.json").read_text())
