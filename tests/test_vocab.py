"""Vocabulary and pseudonymisation: the id mappings every stage must share."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.data.pseudonym import KEY_ENV, pseudonymise
from recsys.data.vocab import OOV, PAD, Vocab


def test_vocab_encodes_sorted_ids_after_reserved_slots():
    vocab = Vocab.build("items", np.array([30, 10, 20, 10]))
    assert len(vocab) == 5 and vocab.n_known == 3
    assert vocab.encode(np.array([10, 20, 30])).tolist() == [2, 3, 4]
    assert vocab.encode(np.array([15, 99, -1])).tolist() == [OOV, OOV, OOV]
    assert vocab.decode(np.array([4, 2])).tolist() == [30, 10]
    with pytest.raises(ValueError, match="padding"):
        vocab.decode(np.array([PAD]))


def test_empty_vocab_maps_everything_to_unknown():
    vocab = Vocab.build("empty", np.array([], dtype=np.int64))
    assert vocab.encode(np.array([1, 2])).tolist() == [OOV, OOV]


def test_vocab_round_trips_through_disk(tmp_path):
    vocab = Vocab.build("users", np.array([5, 3, 9]))
    vocab.save(tmp_path / "users")
    loaded = Vocab.load(tmp_path / "users")
    assert loaded.name == "users" and np.array_equal(loaded.ids, vocab.ids)
    raw = np.array([9, 4, 3])
    assert np.array_equal(loaded.encode(raw), vocab.encode(raw))


def test_pseudonyms_are_keyed_stable_and_non_negative():
    raw = np.array(["alice", "bob", "alice"])
    a = pseudonymise(raw, "k1")
    assert a[0] == a[2] and a[0] != a[1] and (a >= 0).all()
    assert np.array_equal(a, pseudonymise(raw, "k1"))
    assert not np.array_equal(a, pseudonymise(raw, "k2"))


def test_pseudonym_key_is_required(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match=KEY_ENV):
        pseudonymise(np.array([1]), None)
    monkeypatch.setenv(KEY_ENV, "from-env")
    assert np.array_equal(
        pseudonymise(np.array([1]), None), pseudonymise(np.array([1]), "from-env")
    )


@pytest.mark.parametrize("spread", [1, 10**15])  # ids numbered from 0 (a table) or not (search)
def test_encode_agrees_with_a_dictionary_for_dense_and_sparse_ids(spread):
    rng = np.random.default_rng(3)
    ids = rng.choice(5000, 1200, replace=False) * spread
    vocab = Vocab.build("items", ids).extend(rng.choice(5000, 300) * spread + 7)
    expected = {int(raw): i + 2 for i, raw in enumerate(vocab.ids)}
    queries = np.concatenate([vocab.ids, rng.integers(-5, 6000, 400) * spread])
    queries = queries[: len(queries) // 2 * 2].reshape(2, -1)
    got = vocab.encode(queries)
    assert got.shape == queries.shape and got.dtype == np.int64
    assert got.ravel().tolist() == [expected.get(int(q), OOV) for q in queries.ravel()]
