"""The chunked full-catalogue cross-entropy: same values and gradients as the generic one on
full logits, any chunk size, and bit-for-bit repeatable training per seed on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recsys.data.interactions import UserSequences
from recsys.models.sequential import SequentialConfig
from recsys.recommenders.sequential import SequentialRecommender
from recsys.tasks.chunked_ce import chunked_full_ce
from recsys.tasks.sequential import LossConfig, full_ce
from recsys.training.trainer import TrainerConfig


def _reference(h, w, t, allowed=None):
    logits = h @ w.t()
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    logits[:, :2] = float("-inf")
    return F.cross_entropy(logits, t)


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 1000])
def test_chunked_loss_and_gradients_equal_the_generic_cross_entropy(chunk_rows):
    torch.manual_seed(0)
    h = torch.randn(50, 6, requires_grad=True)
    w = torch.randn(40, 6, requires_grad=True)
    t = torch.randint(2, 40, (50,))
    loss = chunked_full_ce(h, w, t, chunk_rows=chunk_rows)
    loss.backward()
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    expected = _reference(h2, w2, t)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(h.grad, h2.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w.grad, w2.grad, atol=1e-6, rtol=1e-5)
    assert torch.all(w.grad[:2] == 0)  # padding and unknown rows are never scored


def test_chunked_loss_over_allowed_items_and_a_scaled_upstream_gradient():
    torch.manual_seed(1)
    h = torch.randn(9, 4, requires_grad=True)
    w = torch.randn(12, 4, requires_grad=True)
    t = torch.randint(2, 12, (9,))
    allowed = torch.rand(9, 12) > 0.5
    allowed[torch.arange(9), t] = True
    (3.0 * chunked_full_ce(h, w, t, allowed, chunk_rows=4)).backward()
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    (3.0 * _reference(h2, w2, t, allowed)).backward()
    torch.testing.assert_close(h.grad, h2.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.grad, w2.grad, atol=1e-5, rtol=1e-5)


def test_full_ce_takes_the_chunked_path_only_when_asked():
    torch.manual_seed(2)
    h, w, t = torch.randn(20, 4), torch.randn(15, 4), torch.randint(2, 15, (20,))
    whole, chunked = full_ce(h, w, t, chunk_rows=0), full_ce(h, w, t, chunk_rows=3)
    assert chunked.item() == pytest.approx(whole.item(), rel=1e-6)
    with pytest.raises(ValueError, match="chunk_rows"):
        chunked_full_ce(h, w, t, chunk_rows=0)
    with pytest.raises(ValueError):
        LossConfig(ce_chunk_rows=-1)


def _streams(seed: int) -> UserSequences:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 12, size=40)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = rng.integers(2, 60, size=int(indptr[-1])).astype(np.int64)
    return UserSequences(indptr=indptr, items=items, ts=np.arange(len(items)), n_items=60)


def _train(seed: int) -> dict[str, torch.Tensor]:
    rec = SequentialRecommender(
        model=SequentialConfig(maxlen=8, dim=16, n_blocks=1, dropout=0.2),
        loss=LossConfig(name="full_ce", ce_chunk_rows=16),
        trainer=TrainerConfig(
            max_epochs=2, batch_size=8, seed=seed, checkpoint=False, progress=False, bucket_pool=2
        ),  # fmt: skip
    )
    rec.fit(_streams(0))
    return {k: v.clone() for k, v in rec.model.state_dict().items()}


def test_training_with_the_chunked_loss_is_bitwise_repeatable_per_seed():
    first, second, other = _train(5), _train(5), _train(6)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_bfloat16_products_stay_close_to_float32():
    torch.manual_seed(3)
    h = torch.randn(64, 16, requires_grad=True)
    w = (0.3 * torch.randn(200, 16)).requires_grad_()
    t = torch.randint(2, 200, (64,))
    chunked_full_ce(h, w, t, chunk_rows=16, matmul_dtype="bfloat16").backward()
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    expected = _reference(h2, w2, t)
    expected.backward()
    low = chunked_full_ce(h.detach(), w.detach(), t, matmul_dtype="bfloat16")
    assert low.item() == pytest.approx(expected.item(), rel=2e-2)
    torch.testing.assert_close(h.grad, h2.grad, atol=2e-3, rtol=5e-2)
    torch.testing.assert_close(w.grad, w2.grad, atol=2e-3, rtol=5e-2)
    with pytest.raises(ValueError, match="matmul_dtype"):
        chunked_full_ce(h, w, t, matmul_dtype="float16")


def test_bfloat16_is_repeatable_and_takes_a_vanishing_target_from_the_logits():
    torch.manual_seed(4)
    h, w = 8.0 * torch.randn(40, 16), torch.randn(300, 16)
    logits = h @ w.t()
    logits[:, :2] = float("-inf")
    t = logits[:, 2:].argmin(dim=1) + 2  # each row's least likely item: p far below 2**-100
    assert bool((torch.softmax(logits, 1).gather(1, t[:, None]) < 2.0**-100).any())
    first = chunked_full_ce(h, w, t, chunk_rows=16, matmul_dtype="bfloat16")
    again = chunked_full_ce(h, w, t, chunk_rows=16, matmul_dtype="bfloat16")
    assert torch.equal(first, again) and torch.isfinite(first)
    assert first.item() == pytest.approx(_reference(h, w, t).item(), rel=2e-2)
