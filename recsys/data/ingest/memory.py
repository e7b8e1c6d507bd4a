"""Ingestion of tables already in memory -> pseudonymised, validated world folder, vocabularies.

Raw user ids (strings or integers, e.g. a platform's account ids) are replaced by keyed-hash
pseudonyms before anything is validated or written, so no derived artifact ever holds them.
The vocabularies written beside the tables (``vocab/<entity>.npy|json``) are the index maps
that training, evaluation and serving all load, so every stage maps ids identically.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from recsys.data.pseudonym import pseudonymise
from recsys.data.tables import SCHEMA_VERSION, LiveCommerceTables, save_tables
from recsys.data.validation import ValidationReport, validate
from recsys.data.vocab import ENTITY_IDS, Vocab, save_vocabs, vocabs_from_frames


def entity_vocabs(tables: LiveCommerceTables) -> dict[str, Vocab]:
    """One vocabulary per entity of the tables (see ``recsys.data.vocab.ENTITY_IDS``)."""
    return vocabs_from_frames({t: tables.table(t) for t, _ in ENTITY_IDS.values()})


def _pseudonymise_column(col: pd.Series, key: str | None) -> pd.Series:
    """Pseudonyms where a raw id is present; missing ids stay missing for validation to report."""
    present = col.notna().to_numpy()
    out = pd.array([pd.NA] * len(col), dtype="Int64")
    if present.any():
        raw = col.to_numpy(dtype=object)[present].astype(str)
        out[present] = pseudonymise(raw, key)
    return pd.Series(out, index=col.index, name=col.name)


def pseudonymise_tables(raw: LiveCommerceTables, key: str | None) -> LiveCommerceTables:
    """The tables with ``user_id`` in users and events replaced by keyed pseudonyms."""
    users = raw.users.assign(user_id=_pseudonymise_column(raw.users["user_id"], key))
    events = raw.events.assign(user_id=_pseudonymise_column(raw.events["user_id"], key))
    return dataclasses.replace(raw, users=users, events=events)


def ingest(
    raw: LiveCommerceTables,
    out_dir: str | Path,
    *,
    key: str | None,
    mode: str = "strict",
    source: str = "<ingest>",
) -> ValidationReport:
    """Pseudonymise, validate (lenient rejects go to ``out_dir/quarantine``) and write."""
    out = Path(out_dir)
    quarantine = out / "quarantine" if mode == "lenient" else None
    report = validate(
        pseudonymise_tables(raw, key), mode=mode, quarantine_dir=quarantine, source=source
    )
    save_tables(report.tables, out)
    save_vocabs(entity_vocabs(report.tables), out / "vocab")
    counts = {name: dataclasses.asdict(c) for name, c in report.counts.items()}
    manifest = {"source": source, "schema_version": SCHEMA_VERSION, "validation": counts}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return report
