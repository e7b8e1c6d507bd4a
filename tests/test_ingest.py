"""Ingestion pseudonymises raw user ids before validation and writes vocabularies beside data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recsys.data.ingest import entity_vocabs, ingest
from recsys.data.pseudonym import pseudonymise
from recsys.data.tables import load_tables
from recsys.data.validation import ValidationError
from recsys.data.vocab import load_vocabs
from tests.test_validation import make_world

RAW_NAMES = {1: "alice@shop", 2: "bob@shop", 3: "carol@shop"}


def raw_world():
    world = make_world()
    users = world.users.assign(user_id=world.users["user_id"].map(RAW_NAMES).astype(object))
    events = world.events.assign(user_id=world.events["user_id"].map(RAW_NAMES).astype(object))
    return dataclasses.replace(world, users=users, events=events)


def test_ingest_writes_pseudonymised_tables_and_vocabs(tmp_path):
    report = ingest(raw_world(), tmp_path, key="secret")
    assert report.n_rejected == 0
    tables = load_tables(tmp_path)
    expected = pseudonymise(np.array(list(RAW_NAMES.values())), "secret")
    assert sorted(tables.users["user_id"].tolist()) == sorted(expected.tolist())
    on_disk = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"alice@shop" not in on_disk  # raw ids never reach an artifact
    vocabs = load_vocabs(tmp_path / "vocab")
    assert set(vocabs) == {"user", "streamer", "product", "session"}
    for entity, vocab in entity_vocabs(tables).items():
        assert np.array_equal(vocabs[entity].ids, vocab.ids)


def test_ingest_different_key_gives_different_pseudonyms(tmp_path):
    ingest(raw_world(), tmp_path / "a", key="k1")
    ingest(raw_world(), tmp_path / "b", key="k2")
    a = load_tables(tmp_path / "a").users["user_id"]
    b = load_tables(tmp_path / "b").users["user_id"]
    assert set(a).isdisjoint(set(b))


def test_missing_raw_user_id_is_reported_not_hashed(tmp_path):
    raw = raw_world()
    raw.events.loc[3, "user_id"] = None
    with pytest.raises(ValidationError, match="user_id"):
        ingest(raw, tmp_path / "strict", key="k")
    report = ingest(raw, tmp_path / "lenient", key="k", mode="lenient")
    assert report.counts["events"].rejected == 1
    assert (tmp_path / "lenient" / "quarantine" / "events.parquet").is_file()
