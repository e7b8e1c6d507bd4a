"""recsys-index: a trained model's candidate index, saved beside its checkpoint, round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recsys.cli.index import build_indexes
from recsys.recommenders.restore import restore
from recsys.retrieval import CandidateIndex
from tests.conftest import compose_config

USERS = np.arange(2, 40)
K = 10

# Restores the model and its index in a fresh interpreter and prints the top-k raw ids.
SEARCH = """
import json, sys
import numpy as np
from recsys.retrieval import CandidateIndex
from recsys.recommenders.restore import restore
ckpt, index_dir, cache, head, k = sys.argv[1:6]
r = restore(ckpt, cache_dir=cache)
view = r.recommender.for_head(head)
q = view.query_embeddings(np.arange(2, 40), r.data.splits[head].train)
_, ids = CandidateIndex.load(index_dir).search(q, int(k))
print(json.dumps(ids.tolist()))
"""


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(trained_two_tower):
    return trained_two_tower


def test_index_round_trips_through_a_new_process(trained):
    ckpt, cache = trained
    summary = build_indexes(compose_config("index", [f"checkpoint={ckpt}", f"cache_dir={cache}"]))
    assert set(summary) == {"product", "streamer"}
    listing = json.loads((ckpt.parent / "index" / "indexes.json").read_text())
    assert listing["heads"]["product"]["count"] == summary["product"]["count"]
    restored = restore(ckpt, cache_dir=str(cache))
    for head, info in summary.items():
        split = restored.data.splits[head]
        assert info["count"] == split.item_vocab.n_known
        view = restored.recommender.for_head(head)
        q = view.query_embeddings(USERS, split.train)  # (B, d)
        c = restored.recommender.candidate_embeddings(head, at=info["at"])[2:]  # (n, d)
        _, ids = CandidateIndex.load(info["path"]).search(q, K)
        exact = split.item_vocab.ids[np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :K]]
        assert (ids == exact).mean() > 0.99  # Flat: exact up to float ties
        args = [str(ckpt), info["path"], str(cache), head, str(K)]
        out = subprocess.run(
            [sys.executable, "-c", SEARCH, *args], capture_output=True, text=True, check=True
        )
        assert np.array_equal(np.array(json.loads(out.stdout.strip().splitlines()[-1])), ids)


def test_index_settings_come_from_config(trained, tmp_path):
    ckpt, cache = trained
    cfg = compose_config(
        "index",
        [
            f"checkpoint={ckpt}",
            f"cache_dir={cache}",
            f"out_dir={tmp_path}",
            "index.factory='HNSW8,Flat'",
            "index.ef_search=32",
        ],
    )
    summary = build_indexes(cfg)
    loaded = CandidateIndex.load(summary["product"]["path"])
    assert summary["product"]["factory"] == "HNSW8,Flat" and loaded.config.ef_search == 32
    assert Path(summary["streamer"]["path"]).parent == tmp_path
