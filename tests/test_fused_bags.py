"""Inference reads many bags in one call, to the bit of one call per bag."""

from __future__ import annotations

import pickle

import pytest
import torch

from recsys.models.embeddings import EntityBags
from recsys.models.fused_bags import FusedBags

SIZES = {"user": 50, "product": 300, "category": 12, "hour": 25}


def _bags(seed: int = 0) -> EntityBags:
    torch.manual_seed(seed)
    return EntityBags(sizes=SIZES, dim=8, init_std=0.5)


def _requests(seed: int, batch: int = 4) -> list:
    g = torch.Generator().manual_seed(seed)

    def ids(table: str, width: int) -> torch.Tensor:
        x = torch.randint(0, SIZES[table], (batch, width), generator=g)
        x[:, width // 2 :] *= torch.rand(batch, width - width // 2, generator=g) > 0.5  # padding
        return x

    def weights(width: int) -> torch.Tensor:
        return torch.rand(batch, width, generator=g)

    return [
        ("user", ids("user", 1), None),
        ("product", ids("product", 9), weights(9)),
        ("category", ids("category", 9), weights(9)),
        ("product", ids("product", 3), None),  # unweighted bag of several ids
        ("hour", ids("hour", 1), None),
        ("category", ids("category", 0), None),  # an empty bag
        ("product", torch.zeros(batch, 9, dtype=torch.int64), weights(9)),  # all padding
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fused_reads_equal_one_call_per_bag_exactly(seed):
    bags, requests = _bags(seed), _requests(seed)
    alone = [bags._pool(*r) for r in requests]
    with torch.no_grad():
        fused = bags(requests)
    assert len(fused) == len(alone)
    for a, b in zip(alone, fused, strict=True):
        assert a.shape == b.shape and torch.equal(a, b)


def test_large_tables_are_read_alone_and_agree():
    bags, requests = _bags(), _requests(3)
    reader = FusedBags(bags.collection.embedding_bags, max_rows=100)  # user and product stay out
    assert reader.tables == ["user", "category", "hour"]
    read = []
    got = reader(requests, lambda *r: read.append(r[0]) or bags._pool(*r))
    assert sorted(read) == ["category", "product", "product", "product"]  # + the empty bag
    for r, b in zip(requests, got, strict=True):
        assert torch.equal(bags._pool(*r), b)


def test_the_copy_follows_updates_of_the_tables():
    bags, requests = _bags(), _requests(4)
    with torch.no_grad():
        before = bags(requests)
        bags.weight("product").mul_(2.0)  # an optimizer step changes the rows in place
        after = bags(requests)
    assert torch.equal(after[1], bags._pool(*requests[1]))
    assert not torch.equal(after[1], before[1])


def test_training_reads_one_call_per_bag_and_a_pickle_holds_no_copy():
    bags, requests = _bags(), _requests(5)
    out = bags(requests)  # gradients on: the table-by-table path, gradients flow
    out[1].sum().backward()
    assert bags.weight("product").grad is not None
    with torch.no_grad():
        bags(requests)
    assert bags._fused._table is not None
    assert pickle.loads(pickle.dumps(bags))._fused._table is None
