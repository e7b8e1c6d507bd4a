"""Ingestion and privacy: rotation of the pseudonym key (an ingested world re-keyed from the old
key to a new one, consistently in every table, vocabulary and side file, atomically, with later
ingestion under the new key meeting the same pseudonyms), and comments stored without PII."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.cli import ingest
from recsys.cli.pipeline import compose_job
from recsys.data.ingest.pseudonyms import Pseudonymiser
from recsys.data.tables import load_tables
from recsys.privacy import keys

REPO = Path(__file__).resolve().parents[1]
OLD, NEW = "old-secret", "new-secret"


@pytest.fixture(scope="module")
def raw(tiny_world_dir, tmp_path_factory) -> Path:
    path = REPO / "experiments" / "export_world.py"
    spec = importlib.util.spec_from_file_location("export_world", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("raw") / "raw"
    module.export_example(str(tiny_world_dir), str(out), "csv")
    return out


def job(raw: Path, world: Path, *more: str):
    return compose_job("ingest", ["tables=example", f"source={raw}", f"out_dir={world}",
                                  "progress=false", *more])  # fmt: skip


@pytest.fixture()
def world(raw, tmp_path) -> Path:
    out = tmp_path / "shop"
    assert ingest.run(job(raw, out, f"key={OLD}")).n_rejected == 0
    users = pd.read_parquet(out / "users.parquet")["user_id"]
    side = pd.DataFrame({"user_id": pd.array([*users[:5], None], dtype="Int64"), "purpose": "x"})
    side.to_parquet(out / "side.parquet")  # a side file the rotation must reach too
    return out


def raw_users(raw: Path) -> pd.Series:
    return pd.read_csv(raw / "users.csv", dtype=str)["account_id"]


def every_pseudonym(world: Path) -> set[int]:
    found = set(np.load(world / "vocab" / "user.npy").tolist())
    for path in world.rglob("*.parquet"):
        frame = pd.read_parquet(path)
        if "user_id" in frame:
            found |= set(frame["user_id"].dropna().astype("int64").tolist())
    return found


def test_rotation_rekeys_every_pseudonym_and_later_ingestion_agrees(raw, world):
    before = every_pseudonym(world)
    vocab_before = np.load(world / "vocab" / "user.npy")
    report = ingest.run(job(raw, world, f"key={OLD}", f"new_key={NEW}"))
    assert report.users_mapped == 700 and "vocab/user.npy" in report.files_rewritten
    assert {"users.parquet", "consent.parquet", "side.parquet"} <= set(report.files_rewritten)
    after = every_pseudonym(world)
    assert before.isdisjoint(after) and len(after) == len(before)
    # The same raw id, hashed by ingestion under the new key, is what the world now holds.
    ids = raw_users(raw)
    expected = Pseudonymiser(NEW)(ids).to_numpy(np.int64)
    old = Pseudonymiser(OLD)(ids).to_numpy(np.int64)
    users = pd.read_parquet(world / "users.parquet")["user_id"].to_numpy()
    assert set(users.tolist()) == set(expected.tolist())
    # The vocabulary keeps its order: index i is still the same viewer.
    as_new = dict(zip(old.tolist(), expected.tolist(), strict=True))
    assert np.load(world / "vocab" / "user.npy").tolist() == [as_new[v] for v in vocab_before]
    side = pd.read_parquet(world / "side.parquet")["user_id"]
    assert side.isna().sum() == 1 and set(side.dropna()) <= set(expected.tolist())
    tables = load_tables(world)
    assert set(tables.events["user_id"].unique()) <= set(users.tolist())
    assert pd.read_json(world / "manifest.json", typ="series")["key_rotations"][0]["users"] == 700
    # Ingesting the raw tables again under the new key finds every viewer already there.
    again = ingest.run(job(raw, world, f"key={NEW}"))
    assert again.already_present["users"] == 700


def test_a_pseudonym_without_raw_id_stops_the_rotation_with_the_world_untouched(world):
    digest = _tree_digest(world)
    users = np.sort(pd.read_parquet(world / "users.parquet")["user_id"].to_numpy())
    with pytest.raises(ValueError, match=r"holds \d+ pseudonyms no raw id maps to"):
        keys.rotate_world(world, users[1:], users[1:] + 1)
    assert _tree_digest(world) == digest
    assert not any(p.name.startswith(".shop.rekey") for p in world.parent.iterdir())


def test_a_crash_between_the_two_renames_is_finished_by_recover(raw, world, monkeypatch):
    real_rename, calls = keys.os.rename, []

    def crash_on_second(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("killed")
        real_rename(src, dst)

    monkeypatch.setattr(keys.os, "rename", crash_on_second)
    with pytest.raises(OSError, match="killed"):
        keys.rotate_key(ingest.settings_from(job(raw, world, f"key={OLD}")), NEW)
    assert not world.exists()  # the old world is aside, the new one complete beside it
    monkeypatch.setattr(keys.os, "rename", real_rename)
    assert keys.recover(world) == "finished the swap"
    expected = set(Pseudonymiser(NEW)(raw_users(raw)).tolist())
    assert set(pd.read_parquet(world / "users.parquet")["user_id"].tolist()) == expected
    assert sorted(p.name for p in world.parent.iterdir()) == ["shop"]


def test_a_crash_before_the_copy_is_complete_keeps_the_old_world(world):
    staging = world.parent / ".shop.rekey"
    shutil.copytree(world, staging)  # a copy half-written when the process died
    digest = _tree_digest(world)
    assert keys.recover(world) == "removed a half-written copy"
    assert _tree_digest(world) == digest and not staging.exists()


def test_the_new_key_must_differ(raw, world):
    with pytest.raises(ValueError, match="differ from the old key"):
        keys.rotate_key(ingest.settings_from(job(raw, world, f"key={OLD}")), OLD)


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


def test_ingestion_stores_comments_without_their_pii(raw, tmp_path):
    events = sorted((raw / "events").glob("*.csv"))[0]
    frame = pd.read_csv(events, dtype=str, keep_default_na=False)
    row = frame.index[frame["action"] == "send_comment"][0]
    frame.loc[row, "content"] = "加我微信 kkqq_2024 或打 138 1234 5678"
    shifted = tmp_path / "raw"
    shutil.copytree(raw, shifted)
    frame.to_csv(shifted / "events" / events.name, index=False)
    world = tmp_path / "shop"
    assert ingest.run(job(shifted, world, f"key={OLD}")).n_rejected == 0
    comments = load_tables(world).events["comment"].dropna()
    assert "加我微信 [WECHAT] 或打 [PHONE]" in set(comments)
    assert not any("kkqq_2024" in c or "1234" in c for c in comments)
