"""Readers of the public dataset formats, and the dataset registry."""

from __future__ import annotations

import json
import time
import types

import numpy as np
import pytest

from recsys.data.loaders import DataFormatError, read_user_item_lines, read_user_sequences
from recsys.data.recbole import read_atomic, read_recbole
from recsys.datasets import (
    DATASETS,
    DatasetSpec,
    LoadedDataset,
    check_counts,
    data_root,
    dataset_spec,
    load_dataset,
    world_cache_dir,
)


def write(path, text: str):
    path.write_text(text)
    return path


def raw_sequences(inter) -> dict[int, list[int]]:
    """{raw user id: [raw item ids in order]} from interactions."""
    seqs = inter.sequences()
    users = inter.user_vocab.decode(np.flatnonzero(seqs.lengths))
    return {
        int(u): inter.item_vocab.decode(seqs.row(inter.user_vocab.encode([u])[0])).tolist()
        for u in users
    }


# --- user item per line ---------------------------------------------------------------


def test_user_item_lines_order_vocab_and_line_numbers(tmp_path):
    f = write(tmp_path / "d.txt", "10 7\n10 3\n2 7\n2 9\n2 3\n")
    inter = read_user_item_lines(f)
    assert inter.user_vocab.ids.tolist() == [2, 10]
    assert inter.item_vocab.ids.tolist() == [3, 7, 9]
    assert inter.user.tolist() == [3, 3, 2, 2, 2]
    assert inter.item.tolist() == [3, 2, 3, 4, 2]
    assert inter.ts.tolist() == [1, 2, 3, 4, 5]
    assert raw_sequences(inter) == {2: [7, 9, 3], 10: [7, 3]}
    assert inter.name == "d"


def test_user_item_lines_without_final_newline_and_crlf(tmp_path):
    f = tmp_path / "d.txt"
    f.write_bytes(b"1 5\r\n1 6\r\n2 5")
    inter = read_user_item_lines(f)
    assert raw_sequences(inter) == {1: [5, 6], 2: [5]}


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ("1 2\n1 x\n", 2, "#2", "'x'"),
        ("1 2\n1 2 3\n", 2, "#3", "expected 2 fields, got 3"),
        ("1 2\n3\n", 2, "item", "expected 2 fields, got 1"),
        ("1 2\n\n1 3\n", 2, None, "empty line"),
        ("1 2\n-1 3\n", 2, "#1", "'-1'"),
        ("1 2.5\n", 1, "#2", "'2.5'"),
        ("1 99999999999999999999\n", 1, "#2", "non-negative integer"),
    ],
)
def test_user_item_lines_bad_lines_name_file_line_field(tmp_path, text, line, field, words):
    f = write(tmp_path / "bad.txt", text)
    with pytest.raises(DataFormatError) as err:
        read_user_item_lines(f)
    assert err.value.line == line and err.value.field == field
    msg = str(err.value)
    assert "bad.txt" in msg and f"line {line}" in msg and words in msg


def test_empty_file_is_an_error(tmp_path):
    with pytest.raises(DataFormatError, match="no data"):
        read_user_item_lines(write(tmp_path / "e.txt", "\n"))


# --- one line per user -----------------------------------------------------------------


def test_user_sequences_with_user_ids(tmp_path):
    f = write(tmp_path / "Beauty.txt", "5 1 2 3\n3 4 1\n")
    inter = read_user_sequences(f)
    assert raw_sequences(inter) == {5: [1, 2, 3], 3: [4, 1]}
    assert inter.ts.tolist() == [1, 2, 3, 5, 6]  # token positions, user ids skipped
    assert len(inter) == 5 and inter.user_vocab.n_known == 2


def test_item_sequences_user_is_line_number(tmp_path):
    f = write(tmp_path / "input.txt", "7 8 9\n9\n8 7\n")
    inter = read_user_sequences(f, user_ids=False)
    assert raw_sequences(inter) == {1: [7, 8, 9], 2: [9], 3: [8, 7]}


def test_user_sequences_errors(tmp_path):
    with pytest.raises(DataFormatError, match=r"line 2, field 'item_1'"):
        read_user_sequences(write(tmp_path / "a.txt", "1 2\n3\n"))
    with pytest.raises(DataFormatError, match=r"line 3, field 'user'.*already has line 1"):
        read_user_sequences(write(tmp_path / "b.txt", "1 2\n2 3\n1 4\n"))
    with pytest.raises(DataFormatError, match=r"c.txt, line 2, field '#3'"):
        read_user_sequences(write(tmp_path / "c.txt", "1 2\n2 3 a\n"))


# --- RecBole atomic files ----------------------------------------------------------------

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "7\t20\t3\t300\n"
    "5\t10\t4\t200\n"
    "7\t10\t5\t100\n"
    "7\t30\t1\t300\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    '10\tA "quoted" title\t1995\tComedy Drama\n'
    "20\tB\tunkonwn\tDrama\n"
    "30\tC\t1972\t\n"
    "40\tD\t1980\tHorror\n"
)
USER = (
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "5\t24\tM\ttechnician\t85711\n"
    "7\t53\tF\tother\t94043\n"
)


def recbole_folder(tmp_path, inter=INTER, item=ITEM, user=USER):
    for ext, text in (("inter", inter), ("item", item), ("user", user)):
        write(tmp_path / f"toy.{ext}", text)
    return tmp_path


def test_recbole_sorted_by_time_ties_by_file_order(tmp_path):
    data = read_recbole(recbole_folder(tmp_path), "toy")
    assert raw_sequences(data.interactions) == {5: [10], 7: [10, 20, 30]}
    assert data.interactions.ts.tolist() == [300, 200, 100, 300]


def test_recbole_item_features_aligned_with_vocab(tmp_path):
    data = read_recbole(recbole_folder(tmp_path), "toy")
    f, vocab = data.item_features, data.interactions.item_vocab
    assert vocab.ids.tolist() == [10, 20, 30]  # item 40 never occurs: no index
    assert f.token_names == ("Comedy", "Drama")
    assert f.tokens.shape == (5, 2)
    assert f.tokens.toarray().tolist() == [[0, 0], [0, 0], [1, 1], [0, 1], [0, 0]]
    np.testing.assert_array_equal(f.numeric["release_year"], [np.nan, np.nan, 1995, np.nan, 1972])
    # decades 1970s -> 1, 1990s -> 2; missing 0
    assert f.categorical["release_decade"].tolist() == [0, 0, 2, 0, 1]


def test_recbole_user_features_keyed_by_user_index(tmp_path):
    data = read_recbole(recbole_folder(tmp_path), "toy")
    users = data.user_features
    assert users.index.tolist() == [2, 3]
    assert users["age"].tolist() == [24, 53]
    assert users["gender"].tolist() == ["M", "F"]
    assert data.interactions.user_vocab.decode(users.index.to_numpy()).tolist() == [5, 7]


@pytest.mark.parametrize(
    ("inter", "line", "field", "words"),
    [
        ("user_id:token\titem_id:token\n1\t2\n1\t2\t3\n", 3, None, "expected 2 fields, got 3"),
        ("user_id:token\titem_id:token\n1\t2\n1\n", 3, None, "expected 2 fields, got 1"),
        ("user_id:token\titem_id:token\n1\t2\n1\tb\n", 3, "item_id", "'b'"),
        ("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3.5\n", 2, "timestamp", "'3.5'"),
        ("user_id:token\titem_id\n1\t2\n", 1, None, "name:type"),
    ],
)
def test_recbole_bad_lines(tmp_path, inter, line, field, words):
    write(tmp_path / "x.inter", inter)
    with pytest.raises(DataFormatError) as err:
        read_recbole(tmp_path, "x")
    assert err.value.line == line and err.value.field == field
    assert "x.inter" in str(err.value) and words in str(err.value)


def test_read_atomic_types(tmp_path):
    df = read_atomic(write(tmp_path / "toy.item", ITEM))
    assert df.attrs["types"]["class"] == "token_seq"
    assert df["movie_title"].iloc[0] == 'A "quoted" title'
    assert df["class"].iloc[2] == ""


# --- registry ------------------------------------------------------------------------------


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("RECSYS_DATA_DIR")
    assert data_root().parts[-2:] == ("shared", "data")


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="amazon-beauty-s3rec.*RECSYS_DATA_DIR"):
        load_dataset("amazon-beauty-s3rec", data_dir=tmp_path)


def test_load_from_registry_and_count_check(tmp_path):
    folder = tmp_path / "amazon-beauty-s3rec"
    folder.mkdir()
    write(folder / "Beauty.txt", "1 1 2\n2 2 3\n")
    with pytest.raises(ValueError, match=r"users: found 2, expected 22363"):
        load_dataset("amazon-beauty-s3rec", data_dir=tmp_path)
    loaded = load_dataset("amazon-beauty-s3rec", data_dir=tmp_path, verify=False)
    assert len(loaded.interactions) == 4 and loaded.item_features is None
    spec = DatasetSpec("toy", "user_sequences", n_users=2, n_items=3, n_interactions=4)
    check_counts(LoadedDataset(loaded.interactions, None, None, spec))


def test_unknown_name_and_synthetic_specs():
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        dataset_spec("nope")
    assert dataset_spec("synthetic-tiny").preset == "tiny"
    assert dataset_spec("synthetic-medium").preset == "medium"


def test_synthetic_world_is_generated_once_into_the_cache(tmp_path, monkeypatch):
    calls = []

    def fake_simulate(cfg, out_dir, progress=True):
        calls.append(cfg)
        out_dir.mkdir(parents=True)
        (out_dir / "manifest.json").write_text(json.dumps({"counts": {}}))
        return {}

    monkeypatch.setattr(
        "recsys.datasets.SimConfig", types.SimpleNamespace(from_preset=lambda p, seed: (p, seed))
    )
    monkeypatch.setattr("recsys.datasets.simulate", fake_simulate)
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(
        "recsys.datasets.load_tables", lambda f: types.SimpleNamespace(users=None, folder=f)
    )
    monkeypatch.setattr("recsys.datasets.product_features", lambda t, v: None)
    monkeypatch.setattr("recsys.datasets._user_frame", lambda u, i: None)
    inter = types.SimpleNamespace(item_vocab=None)  # what the stubbed feature builder reads
    monkeypatch.setattr("recsys.datasets.product_interactions", lambda t: inter)
    for _ in range(2):
        loaded = load_dataset("synthetic-tiny", seed=3)
    assert calls == [("tiny", 3)]
    assert loaded.path == world_cache_dir("tiny", 3) == tmp_path / "tiny-3"
    assert loaded.tables.folder == tmp_path / "tiny-3"
    assert not list(tmp_path.glob(".tiny-3.tmp-*"))


# --- the shared datasets ------------------------------------------------------------------

PUBLIC = [n for n, s in DATASETS.items() if s.format != "synthetic"]


@pytest.mark.shared_data
@pytest.mark.parametrize("name", PUBLIC)
def test_shared_dataset_counts_match_readme(name):
    spec = DATASETS[name]
    folder = data_root() / spec.folder
    if not folder.is_dir():
        pytest.skip(f"shared dataset folder {folder} not present (set RECSYS_DATA_DIR)")
    start = time.perf_counter()
    loaded = load_dataset(name, verify=False)
    elapsed = time.perf_counter() - start
    inter = loaded.interactions
    assert inter.user_vocab.n_known == spec.n_users
    assert inter.item_vocab.n_known == spec.n_items
    assert len(inter) == spec.n_interactions
    assert np.all(inter.user >= 2) and np.all(inter.item >= 2)
    assert elapsed < 10, f"{name} took {elapsed:.1f}s to load"
    if name == "ml-100k":
        assert loaded.item_features.tokens.shape == (spec.n_items + 2, 19)
        assert len(loaded.user_features) == spec.n_users
