"""A platform's consent log -> the world's ``consent.parquet`` (the optional ``consent`` table).

The table is mapped, pseudonymised and validated chunk by chunk like the others
(``recsys.data.ingest.run``): its labels and granted values through the mapping's ``values``,
user ids with the same key as the events, bad rows quarantined with their file, row and field.
A decision may name a viewer with no events (consent is about the person, not their history),
so no reference to the users table is checked. What is written is the world's decision log in
``recsys.data.schema.CONSENT`` columns: the decisions already held, then this run's accepted
ones in file order, so a re-run on more days appends and the latest decision by ``ts`` holds
when ``recsys.privacy.consent.ConsentBook`` reads it (a tie goes to the later row). A decision
identical to one already held (the platform exported its whole log again) is counted as present
and not written twice. The file is replaced atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.schema import CONSENT, CONSENT_FILE, pandas_dtype
from recsys.data.tables import write_table
from recsys.data.validation.coercion import parse_column


def empty_decisions() -> pd.DataFrame:
    return pd.DataFrame({c.name: pd.Series(dtype=pandas_dtype(c)) for c in CONSENT.columns})


def held_decisions(world: Path) -> pd.DataFrame:
    """The decisions ``world`` already holds, in its columns (none when it has no file)."""
    path = Path(world) / CONSENT_FILE
    if not path.is_file():
        return empty_decisions()
    frame = pd.read_parquet(path)
    missing = [c for c in CONSENT.names if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; need {CONSENT.names}")
    return frame[CONSENT.names].assign(channel=frame["channel"].fillna(""))


def held_index(held: pd.DataFrame) -> pd.MultiIndex:
    """The decisions of ``held`` as keys ``held_mask`` looks rows up in (built once a run)."""
    ints = {c.name: "int64" for c in CONSENT.columns if c.kind == "int"}
    return pd.MultiIndex.from_frame(held[CONSENT.names].astype({**ints, "granted": bool}))


def held_mask(frame: pd.DataFrame, held: pd.MultiIndex) -> np.ndarray:
    """(n,) bool: rows of a mapped chunk that read as a decision already ``held``."""
    if not len(held) or not len(frame):
        return np.zeros(len(frame), dtype=bool)
    parsed = [parse_column(frame[c.name], c.kind) for c in CONSENT.columns]
    readable = np.logical_and.reduce([p.present for p in parsed])
    keys = pd.MultiIndex.from_arrays([np.asarray(p.values) for p in parsed])
    return readable & keys.isin(held)


def write_decisions(frame: pd.DataFrame, world: Path) -> Path:
    """``world/consent.parquet`` replaced by ``frame`` atomically (temp file, then rename)."""
    path = Path(world) / CONSENT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    write_table(frame.reset_index(drop=True), tmp, CONSENT)
    os.replace(tmp, path)
    return path
