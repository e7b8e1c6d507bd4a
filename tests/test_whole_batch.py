"""A batch split into parts optimises the whole batch's loss: the parts' terms sum to it and
their gradients to its gradient (what a distributed step relies on), for both model families;
row-keyed dropout drops each row as the whole batch does."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.data.interactions import UserSequences
from recsys.inputs.tokens import PRODUCT, TokenLog, world_context
from recsys.inputs.two_tower import QueryBuilder, TwoTowerDataset, training_examples
from recsys.inputs.windows import WindowDataset, training_windows
from recsys.inputs.world_features import WorldFeatures
from recsys.models.row_dropout import (
    RowDropout,
    bernoulli_draws,
    bulk_draws_match_torch,
    dropout,
    whole_batch_rows,
)
from recsys.models.sequential import SequentialConfig, SequentialModel
from recsys.models.two_tower import TwoTowerConfig, TwoTowerModel
from recsys.tasks.sequential import LossConfig, SequentialTask
from recsys.tasks.two_tower import TwoTowerLossConfig, TwoTowerTask
from recsys.tasks.whole_batch import WholeBatch

pytestmark = pytest.mark.usefixtures("one_thread")


def _loss_and_grads(model, task, batch, generator_seed: int, whole=None):
    model.zero_grad(set_to_none=True)
    generator = torch.Generator().manual_seed(generator_seed)
    loss, _ = (
        task(model, batch, generator)
        if whole is None
        else task(model, batch, generator, whole=whole)
    )
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def assert_parts_sum_to_the_whole(model, task, dataset, n_parts: int, batch_size: int):
    """For every batch of an epoch: the sum of the parts' terms (and gradients) equals the
    whole batch's loss (and gradient)."""
    kwargs = {"batch_size": batch_size, "seed": 3, "epoch": 0}
    whole_batches = list(dataset.epoch(**kwargs))
    parted = zip(*(dataset.epoch(**kwargs, part=(j, n_parts)) for j in range(n_parts)), strict=True)
    for step, (batch, parts) in enumerate(zip(whole_batches, parted, strict=True)):
        want, want_grads = _loss_and_grads(model, task, batch, step)
        shares = [task.shares(p) for p in parts]
        got, got_grads = 0.0, {}
        for j, part in enumerate(parts):
            loss, grads = _loss_and_grads(model, task, part, step, WholeBatch(shares, j))
            got += float(loss)
            for k, g in grads.items():
                got_grads[k] = got_grads.get(k, 0) + g
        assert got == pytest.approx(float(want), rel=1e-5, abs=1e-6), step
        assert set(got_grads) == set(want_grads)
        for k, g in want_grads.items():
            # Sums in another order: float32 rounding, up to ~1e-5 of the gradient's scale.
            scale = float(g.abs().max())
            torch.testing.assert_close(got_grads[k], g, rtol=1e-4, atol=1e-4 * scale + 1e-6,
                                       msg=lambda m, k=k: f"{k}: {m}")  # fmt: skip


def _sequences(n_users: int, n_items: int, seed: int) -> UserSequences:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 9, n_users)  # parts then hold different numbers of targets
    items = rng.integers(2, n_items, lengths.sum())
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return UserSequences(indptr, items, np.arange(len(items), dtype=np.int64), n_items)


@pytest.mark.parametrize("loss", ["full_ce", "bce", "sampled_softmax"])
def test_sequential_parts_take_their_share_of_the_whole_batch_loss(loss):
    log = TokenLog.from_sequences(_sequences(40, 20, seed=0))
    dataset = WindowDataset(training_windows(log, maxlen=6, heads={"product": PRODUCT}))
    torch.manual_seed(0)
    model = SequentialModel(SequentialConfig(n_products=20, dim=8, maxlen=6, n_heads=2,
                                             dropout=0.0))  # fmt: skip
    task = SequentialTask(
        LossConfig(name=loss, n_negatives=8, lag_loss_weight=0.0), n_entities=model.tables.sizes
    )
    assert_parts_sum_to_the_whole(model, task, dataset, n_parts=3, batch_size=16)


@pytest.mark.parametrize("negatives", ["in_batch", "live"])
def test_two_tower_parts_see_every_row_of_the_whole_batch(tiny_world, negatives):
    context = world_context(tiny_world)
    v = context.vocabs
    features = WorldFeatures.from_tables(
        tiny_world, users=v.user, products=v.product, streamers=v.streamer
    )
    heads = ("product", "streamer")
    examples = training_examples(context.log, heads, world=features)
    sizes = {"product": context.n_products, "streamer": context.n_streamers}
    live = {h: context.availability[h] for h in heads} if negatives == "live" else None
    dataset = TwoTowerDataset(
        examples, QueryBuilder(context.log, bag_size=4, world=features), max_lag_s=3600,
        live=live, n_entities=sizes,
    )  # fmt: skip
    torch.manual_seed(0)
    model = TwoTowerModel(
        TwoTowerConfig(n_users=len(v.user), n_products=context.n_products,
                       n_streamers=context.n_streamers, dim=8, out_dim=8, hidden=16,
                       bag_size=4, dropout=0.0, context=False, demographics=False)
    )  # fmt: skip
    counts = {h: examples.counts(h, model.n_entities(h)) for h in heads}
    task = TwoTowerTask(
        TwoTowerLossConfig(n_mixed=16), n_entities={h: model.n_entities(h) for h in heads},
        counts=counts,
    )  # fmt: skip
    assert_parts_sum_to_the_whole(model, task, dataset, n_parts=3, batch_size=50)


def test_parts_follow_one_another_in_the_whole_batch():
    shares = [{"target": torch.tensor([5, 6, 7])}, {"target": torch.tensor([8, 9])}]
    assert WholeBatch(shares, index=0).rows("target").tolist() == [5, 6, 7, 8, 9]
    assert WholeBatch(shares, index=1).own_rows().tolist() == [3, 4]
    assert WholeBatch(shares, index=1).start == 3
    assert WholeBatch(shares, index=1).n_rows == 5
    with pytest.raises(ValueError, match="part 3 of a batch in 2 parts"):
        WholeBatch(shares, index=3)


def test_row_dropout_drops_each_row_as_the_whole_batch_does():
    torch.manual_seed(0)
    x = torch.randn(7, 5, 3)  # (B, L, dim) left-padded windows
    drop = RowDropout(0.4, width=6).train()
    with whole_batch_rows(11, start=0, stop=7, n_rows=7):
        whole = drop(x)
    assert 0 < int((whole == 0).sum()) < x.numel()
    for start, stop, width in ((0, 4, 5), (4, 7, 3)):  # a part may be narrower (trimmed left)
        with whole_batch_rows(11, start=start, stop=stop, n_rows=7):
            part = drop(x[start:stop, -width:])
        assert torch.equal(part, whole[start:stop, -width:])
    everyone = RowDropout(0.4, rows="all").train()
    with whole_batch_rows(11, start=4, stop=7, n_rows=7):
        kept = everyone(x[:, 0])  # a set every part computes whole: all of its rows
    with whole_batch_rows(11, start=0, stop=4, n_rows=7):
        assert torch.equal(everyone(x[:, 0]), kept)


def test_row_dropout_outside_a_plan_is_plain_dropout_and_checks_its_rows():
    x = torch.randn(4, 8)
    torch.manual_seed(3)
    plain = torch.nn.Dropout(0.5).train()(x)
    torch.manual_seed(3)
    assert torch.equal(RowDropout(0.5).train()(x), plain)
    with whole_batch_rows(1, start=0, stop=2, n_rows=4), pytest.raises(ValueError, match="4 rows"):
        RowDropout(0.5).train()(x)
    with pytest.raises(ValueError, match="rows 3:2"):
        with whole_batch_rows(1, start=3, stop=2, n_rows=4):
            pass


def _cpu_vendor() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.read_text() if cpuinfo.exists() else platform.processor()


@pytest.mark.parametrize("shape", [(128, 37, 50), (7, 13), (1,), (0, 5)])
@pytest.mark.parametrize("p", [0.2, 0.5, 0.1 + 0.2])
def test_dropout_draws_torchs_masks_in_bulk(shape, p):
    """Outputs, gradients and the generator's state afterwards are F.dropout's, bit for bit."""
    if "GenuineIntel" not in _cpu_vendor():  # elsewhere torch's sampler is the per-element one
        assert bulk_draws_match_torch()
    x = torch.randn(shape)
    results = []
    for fn in (lambda t: torch.nn.functional.dropout(t, p, training=True), lambda t: dropout(t, p)):
        torch.manual_seed(17)
        leaf = x.clone().requires_grad_()
        out = fn(leaf)
        out.backward(torch.arange(out.numel(), dtype=out.dtype).view(out.shape))
        results.append((out.detach(), leaf.grad, torch.rand(5)))
    for ours, theirs in zip(results[1], results[0], strict=True):
        assert torch.equal(ours.view(torch.int32), theirs.view(torch.int32))


def test_dropout_keeps_torchs_path_where_the_bulk_one_does_not_apply():
    x = torch.randn(6, 4)
    for value, p in ((x.t(), 0.3), (x.double(), 0.3), (x, 1.0)):  # strided, float64, p = 1
        torch.manual_seed(2)
        expected = torch.nn.functional.dropout(value, p, training=True)
        torch.manual_seed(2)
        assert torch.equal(dropout(value, p), expected)
    mask = bernoulli_draws((100_000,), 0.75, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and abs(float(mask.float().mean()) - 0.75) < 0.01
