"""Rotation of the pseudonym key: re-key an ingested world folder from the old key to a new one.

A pseudonym is a keyed hash of the raw id (``recsys.data.pseudonym``), so it cannot be turned
back into the raw id, and a new key needs the raw ids again: ``key_pairs`` reads them from the
platform's raw tables (every table with a ``user_id``, through the same mapping and the same
``Pseudonymiser`` as ingestion) and hashes each under both keys. ``rotate_world`` then rewrites
every place the world holds a pseudonym: each Parquet file with a ``user_id`` column (users,
event parts, quarantined rows, consent, tombstones, ...) and the user vocabulary, whose index
order is kept (row i of any embedding still belongs to the same viewer). A pseudonym the raw
ids do not cover stops the rotation with the world untouched, naming the file.

The rotation is atomic for the folder as a whole: the new world is written beside it
(``.<name>.rekey``, unchanged files hard-linked), marked complete, then swapped in by two
renames; ``recover`` (run first by every rotation) finishes a swap a crash interrupted, or
drops a half-written copy, so the folder is always wholly under one key. Checkpoints trained
before the rotation keep the old pseudonyms in their vocabularies; retrain them (their
vocabulary check names the change).

    recsys-ingest tables=example source=raw/ out_dir=worlds/shop key=OLD new_key=NEW
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.ingest.mapping import apply_mapping
from recsys.data.ingest.pseudonyms import Pseudonymiser
from recsys.data.ingest.readers import ReadOptions, read_chunks
from recsys.data.ingest.run import IngestSettings
from recsys.data.pseudonym import resolve_key

log = logging.getLogger(__name__)
COMPLETE = ".rekey-complete"
USER_VOCAB = Path("vocab") / "user.npy"


@dataclass(frozen=True)
class RotationReport:
    world: str
    users_mapped: int  # distinct raw user ids read and hashed under both keys
    files_rewritten: list[str] = field(default_factory=list)  # relative to the world
    pseudonyms_rewritten: int = 0  # values replaced, over every file
    seconds: float = 0.0

    def summary(self) -> str:
        files, took = len(self.files_rewritten), f"{self.seconds:.1f} s"
        return (f"{self.world}: {self.pseudonyms_rewritten} pseudonyms of {self.users_mapped} "
                f"users re-keyed in {files} files ({took})")  # fmt: skip


def key_pairs(settings: IngestSettings, new_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(old pseudonyms sorted, their new pseudonyms) of every raw user id in the raw tables
    ``settings`` reads, under ``settings.key`` and ``new_key``."""
    old_hash, new_hash = Pseudonymiser(settings.key), Pseudonymiser(new_key)
    old, new = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for src in settings.tables.values():
        if "user_id" not in src.schema.names or src.raw_name("user_id") is None:
            continue
        ints = [c.name for c in src.schema.columns if c.kind == "int"]
        text = tuple(raw for raw in map(src.raw_name, ints) if raw is not None)
        options = ReadOptions(settings.chunk_rows, settings.delimiter, text)
        for chunk in read_chunks(src.location(Path(settings.source)), settings.format, options):
            ids = apply_mapping(chunk.frame, src, str(chunk.file))["user_id"].dropna()
            ids = ids.drop_duplicates()
            old.append(old_hash(ids).to_numpy(np.int64))
            new.append(new_hash(ids).to_numpy(np.int64))
    old_ids, first = np.unique(np.concatenate(old), return_index=True)
    return old_ids, np.concatenate(new)[first]


def _remap(values: np.ndarray, old: np.ndarray, new: np.ndarray, where: str) -> np.ndarray:
    pos = np.minimum(np.searchsorted(old, values), max(len(old) - 1, 0))
    known = (old[pos] == values) if len(old) else np.zeros(len(values), bool)
    if not known.all():
        raise ValueError(
            f"key rotation: {where} holds {int((~known).sum())} pseudonyms no raw id maps to "
            f"(e.g. {int(values[~known][0])}); give the raw tables that hold every user"
        )
    return new[pos]


def _rekeyed_table(path: Path, old: np.ndarray, new: np.ndarray, where: str) -> pa.Table:
    table = pq.read_table(path)
    i = table.schema.get_field_index("user_id")
    column = table.column(i).combine_chunks()
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    values = column.fill_null(0).to_numpy().astype(np.int64)
    values[valid] = _remap(values[valid], old, new, where)
    rekeyed = pa.array(values, type=column.type, mask=~valid)
    return table.set_column(i, table.schema.field(i), rekeyed)


def _holds_users(path: Path) -> bool:
    return "user_id" in pq.read_schema(path).names


def recover(world: str | Path) -> str | None:
    """Finish or undo a rotation a crash interrupted; what was done (None: nothing to do)."""
    world = Path(world)
    staging, backup = _staging(world), world.parent / f".{world.name}.rekey-old"
    done = None
    if backup.exists() and not world.exists():
        if (staging / COMPLETE).exists():
            os.rename(staging, world)
            done = "finished the swap"
        else:
            os.rename(backup, world)
            done = "restored the old world"
    if backup.exists():
        shutil.rmtree(backup)
        done = done or "removed the old world left after the swap"
    if staging.exists():
        shutil.rmtree(staging)
        done = done or "removed a half-written copy"
    (world / COMPLETE).unlink(missing_ok=True)
    return done


def _staging(world: Path) -> Path:
    return world.parent / f".{world.name}.rekey"


def rotate_world(world: str | Path, old: np.ndarray, new: np.ndarray) -> RotationReport:
    """Every pseudonym of ``world`` in ``old`` (sorted) replaced by its ``new`` one, atomically."""
    began, world = time.perf_counter(), Path(world)
    if (why := recover(world)) is not None:
        log.warning("key rotation: %s: %s", world, why)
    if not (world / "manifest.json").is_file():
        raise FileNotFoundError(f"key rotation: {world} is not a world folder (no manifest.json)")
    if len(np.unique(new)) != len(new):
        raise RuntimeError("key rotation: two users share a new pseudonym; use another key")
    staging = _staging(world)
    try:
        written, count = _write_rekeyed(world, staging, old, new)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # the world itself was never touched
        raise
    _note_rotation(staging, len(old))
    (staging / COMPLETE).write_text("")
    backup = world.parent / f".{world.name}.rekey-old"
    os.rename(world, backup)
    os.rename(staging, world)
    recover(world)
    report = RotationReport(str(world), len(old), written, count, time.perf_counter() - began)
    log.info("key rotation: %s re-keyed, %d users, %d pseudonyms in %d files", world,
             len(old), count, len(written))  # fmt: skip
    return report


def _write_rekeyed(
    world: Path, staging: Path, old: np.ndarray, new: np.ndarray
) -> tuple[list[str], int]:
    """The world copied into ``staging`` with its pseudonyms replaced; (files, values) changed."""
    written, count = [], 0
    for path in sorted(p for p in world.rglob("*") if p.is_file()):
        rel = path.relative_to(world)
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel == USER_VOCAB:
            ids = np.load(path)
            np.save(target, _remap(ids, old, new, str(rel)))
            written, count = written + [str(rel)], count + len(ids)
        elif path.suffix == ".parquet" and _holds_users(path):
            table = _rekeyed_table(path, old, new, str(rel))
            pq.write_table(table, target)
            written, count = written + [str(rel)], count + table.num_rows
        else:
            _link_or_copy(path, target)
    return written, count


def _link_or_copy(source: Path, target: Path) -> None:
    """Unchanged files: hard-linked (no copy of event data), copied where links are refused.
    The manifest is copied, since the staging copy gets a new entry."""
    if source.name != "manifest.json":
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)


def _note_rotation(staging: Path, users: int) -> None:
    path = staging / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.setdefault("key_rotations", []).append({"at": int(time.time()), "users": users})
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def rotate_key(settings: IngestSettings, new_key: str) -> RotationReport:
    """``settings.out_dir`` re-keyed from ``settings.key`` to ``new_key``, reading the raw ids
    from the raw tables ``settings`` describes (what ``recsys-ingest new_key=...`` runs)."""
    if not new_key or resolve_key(new_key) == resolve_key(settings.key):
        raise ValueError("key rotation: new_key must be given and differ from the old key")
    old, new = key_pairs(settings, new_key)
    return rotate_world(settings.out_dir, old, new)
