"""Candidate retrieval: exact and approximate search under raw ids, persistence, the benchmark."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recsys.retrieval import (
    CandidateIndex,
    IndexConfig,
    set_threads,
)

DIM = 8


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny indexes search fastest on one thread (and far faster on busy machines)."""
    set_threads(1)
    yield
    set_threads(2)


def gaussian(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)


def clustered(n: int, clusters: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around unit centres (cosine-like scores, as from normalised towers)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = (
        centres[rng.integers(0, clusters, n)]
        + rng.standard_normal((n, DIM), dtype=np.float32) * 0.1
    )
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(vectors, ids, queries, k, allowed=None) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k by float64 numpy; ids -1 and scores -inf where fewer than k allowed."""
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T  # (B, n)
    if allowed is not None:
        scores[:, ~np.isin(ids, allowed)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    top_ids = np.where(np.isfinite(top), ids[order], -1)
    pad = k - top.shape[1]
    return np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf), np.pad(
        top_ids, ((0, 0), (0, pad)), constant_values=-1
    )


def assert_same_top(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]):
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])


# Sparse, negative and unordered ids: results must come back in the caller's id space.
IDS = np.random.default_rng(1).choice(2 * 10**9, 300, replace=False) - 10**9


def test_flat_equals_numpy_exact_top_k():
    x, q = gaussian(300), gaussian(12, seed=2)
    index = CandidateIndex.build(x, IDS)
    assert_same_top(index.search(q, 10), exact_top(x, IDS, q, 10))
    assert index.search(q, 10)[0].dtype == np.float32


def test_allowed_ids_restrict_flat_search_exactly():
    x, q = gaussian(300), gaussian(12, seed=2)
    allowed = IDS[::7]
    got = CandidateIndex.build(x, IDS).search(q, 10, allowed=allowed)
    assert_same_top(got, exact_top(x, IDS, q, 10, allowed))


def test_fewer_candidates_than_k_are_padded():
    x, q = gaussian(5), gaussian(3, seed=2)
    scores, ids = CandidateIndex.build(x, np.arange(5) + 100).search(q, 8)
    assert (ids[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()
    assert sorted(ids[0, :5]) == [100, 101, 102, 103, 104]
    scores, ids = CandidateIndex.build(x, np.arange(5)).search(q, 3, allowed=[])
    assert (ids == -1).all() and np.isneginf(scores).all()


@pytest.mark.parametrize(
    "factory, params",
    [
        ("HNSW16,Flat", {"ef_search": 64}),
        ("IVF32,Flat", {"nprobe": 8}),
        ("IVF32,PQ4,RFlat", {"nprobe": 8, "k_factor": 8}),
        ("OPQ4,IVF32,PQ4,RFlat", {"nprobe": 8, "k_factor": 8}),
    ],
)
def test_approximate_indexes_recall_on_clustered_data(factory, params):
    x, q = clustered(4000, 40), clustered(50, 40, seed=3)
    truth = exact_top(x, np.arange(4000), q, 10)[1]
    index = CandidateIndex.build(x, np.arange(4000), factory=factory, seed=0, **params)
    assert recall(index.search(q, 10)[1], truth) >= 0.95
    narrow = index.with_params(**{key: 1 for key in params})
    assert recall(narrow.search(q, 10)[1], truth) < recall(index.search(q, 10)[1], truth)


def test_settings_must_fit_the_index():
    x = gaussian(300)
    with pytest.raises(ValueError, match="nprobe does not apply to factory 'Flat'"):
        CandidateIndex.build(x, IDS, nprobe=4)
    with pytest.raises(ValueError, match="k_factor does not apply"):
        CandidateIndex.build(x, IDS, factory="HNSW8,Flat").with_params(k_factor=2)
    with pytest.raises(ValueError, match="not search settings"):
        CandidateIndex.build(x, IDS).with_params(factory="HNSW8")
    with pytest.raises(ValueError, match="invalid FAISS factory string 'Nope'"):
        CandidateIndex.build(x, IDS, factory="Nope")
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        IndexConfig(nprobe=0)


SEARCH_SCRIPT = """
import sys, numpy as np
from recsys.retrieval import CandidateIndex
index = CandidateIndex.load(sys.argv[1])
scores, ids = index.search(np.load(sys.argv[2]), 10)
np.save(sys.argv[3], ids)
np.save(sys.argv[4], scores)
"""


def test_saved_index_gives_identical_results_in_a_new_process(tmp_path):
    x, q = clustered(2000, 20), clustered(20, 20, seed=3)
    config = IndexConfig(factory="IVF16,PQ4,RFlat", train_size=1000, seed=3, nprobe=4, k_factor=4)
    index = CandidateIndex.build(x, np.arange(2000) * 3 - 8, config)
    index.save(tmp_path / "index")
    meta = json.loads((tmp_path / "index" / "index.json").read_text())
    assert meta["config"]["nprobe"] == 4 and meta["count"] == 2000 and meta["dim"] == DIM
    np.save(tmp_path / "q.npy", q)
    out = [str(tmp_path / name) for name in ("ids.npy", "scores.npy")]
    cmd = [sys.executable, "-c", SEARCH_SCRIPT, str(tmp_path / "index"), str(tmp_path / "q.npy")]
    subprocess.run(cmd + out, check=True, capture_output=True, timeout=120)
    scores, ids = index.search(q, 10)
    np.testing.assert_array_equal(np.load(out[0]), ids)
    np.testing.assert_array_equal(np.load(out[1]), scores)
    assert CandidateIndex.load(tmp_path / "index").config == config


def test_load_refuses_files_that_do_not_match_their_hash(tmp_path):
    CandidateIndex.build(gaussian(50), np.arange(50)).save(tmp_path)
    np.save(tmp_path / "ids.npy", np.arange(50) + 1)
    with pytest.raises(ValueError, match="differ from index.json"):
        CandidateIndex.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no saved candidate index"):
        CandidateIndex.load(tmp_path / "missing")


def test_bad_input_gets_clear_errors():
    x = gaussian(20)
    index = CandidateIndex.build(x, np.arange(20))
    with pytest.raises(ValueError, match=r"queries must have shape \(m, 8\), got \(2, 4\)"):
        index.search(gaussian(2, dim=4), 5)
    with pytest.raises(TypeError, match="float32"):
        index.search(gaussian(2).astype(np.float64), 5)
    bad = x.copy()
    bad[13, 2] = np.nan
    with pytest.raises(ValueError, match="vectors row 13 has a NaN"):
        CandidateIndex.build(bad, np.arange(20))
    with pytest.raises(ValueError, match="ids rows 4 and 17 repeat id 4"):
        CandidateIndex.build(x, np.r_[np.arange(17), 4, 30, 31])
    with pytest.raises(ValueError, match="id -1 marks padding"):
        CandidateIndex.build(x, np.arange(20) - 1)
    with pytest.raises(ValueError, match="ids must be 20 integers"):
        CandidateIndex.build(x, np.arange(19))
    for k in (0, -3, 2.5):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            index.search(gaussian(2), k)
    with pytest.raises(ValueError, match="allowed row 1: id 99 is not in the index"):
        index.search(gaussian(2), 3, allowed=[3, 99])


def test_widened_search_settings():
    x = clustered(2000, 20)
    ivf = CandidateIndex.build(x, np.arange(2000), factory="IVF16,Flat", nprobe=2)
    assert ivf.widened(3).config.nprobe == 6 and ivf.widened(100).config.nprobe == 16
    hnsw = CandidateIndex.build(x, np.arange(2000), factory="HNSW8,Flat")
    assert hnsw.widened(2.5).config.ef_search == 40  # FAISS's own efSearch is 16
    flat = CandidateIndex.build(x, np.arange(2000))
    assert flat.widened(4) is flat


def test_benchmark_quick_run_writes_results(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "retrieval.py"
    spec = importlib.util.spec_from_file_location("retrieval_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--quick", "--n", "3000", "--queries", "20", "--k", "10", "--threads",
                          "1", "--out-dir", str(tmp_path)])  # fmt: skip
    saved = json.loads((tmp_path / "retrieval.json").read_text())
    assert saved["unfiltered"][0]["index"] == "Flat (exact)" and saved["filtered"]
    assert all(r["recall"] == 1.0 for r in report["filtered"] if r["strategy"] == "exact")
    text = (tmp_path / "retrieval.md").read_text()
    assert "| data | n | index |" in text and 'Target "filtered at 10% live' in text
    assert "--out-dir" not in saved["command"] and str(tmp_path) not in text
    ivf = {r["strategy"] for r in saved["filtered"] if r["index"].startswith("IVF")}
    assert {"segment", "segment widened", "exact", "selector widened"} <= ivf
