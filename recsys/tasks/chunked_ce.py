"""Softmax cross-entropy over the whole catalogue, computed in row chunks with its gradients.

The full-catalogue loss of ``N`` hidden states against ``n`` output rows needs ``(N, n)`` logits
(ml-1m at maxlen 200: 25,600 x 3,416 floats, 350 MB per batch). Kept for the backward pass,
they are written once and read three more times from main memory, and those passes, not the
arithmetic, dominated the training step on CPU. Here the loss and both gradients are formed
chunk by chunk in the forward pass: a ``(chunk, n)`` block of logits is exponentiated in
place, summed, and immediately multiplied back into ``d hidden`` and accumulated into
``d weight`` while it is still in cache; only those two gradients (the size of the inputs) are
kept, and the backward pass scales them by the incoming gradient. The softmax normaliser is
applied to the small factors (``p @ W = (e @ W) / z``, ``p.T @ h = e.T @ (h / z)``) so no pass
over the block divides it.

``matmul_dtype="bfloat16"`` runs the three products in bfloat16 (CPUs with AVX512-BF16 do
them about twice as fast). There the block never exists in float32: the softmax reads the
bfloat16 logits, sums in float32 and writes normalised bfloat16 probabilities into one buffer,
which both gradient products read as they are (the float32 path's passes for the maximum, the
exponential, the sum and two conversions are one pass here); the loss is ``-log p[target]``
from those probabilities (relative error 2**-9 per row, a monitoring value: the gradients do
not read it), from the logits where ``p`` is too small to carry it.

Chunks are processed in a fixed order with fixed sizes, so a run is bit-for-bit repeatable on
CPU. Values equal ``F.cross_entropy`` on the full logits to float32 rounding (tested).
"""

from __future__ import annotations

import torch

from recsys.data.vocab import N_RESERVED

DEFAULT_CHUNK_ROWS = 256
_TINY = 2.0**-100  # a probability below this takes its loss from the logits
MATMUL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _masked(logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """``logits`` (c, n) with the items a row may not score, and the reserved rows, at -inf."""
    if allowed is not None:
        logits.masked_fill_(~allowed, float("-inf"))
    logits[:, :N_RESERVED] = float("-inf")
    return logits


def _float32_chunk(h, weight, target, allowed, grad_hidden, grad_weight) -> torch.Tensor:
    """One chunk in float32: its summed loss; ``exp(logits) @ W`` and ``exp(logits).T @ h``
    scaled by the normaliser into ``grad_hidden`` (the chunk's rows) and ``grad_weight``."""
    logits = _masked(h @ weight.t(), allowed)  # (c, n)
    picked = logits.gather(1, target[:, None]).squeeze(1)  # (c,)
    top = logits.amax(dim=1, keepdim=True)  # (c, 1)
    exps = logits.sub_(top).exp_()  # (c, n) unnormalised softmax, in place
    norm = exps.sum(dim=1, keepdim=True)  # (c, 1)
    inv = 1.0 / norm  # (c, 1)
    torch.mm(exps, weight, out=grad_hidden)
    grad_weight.addmm_(exps.t(), h * inv)
    grad_hidden.mul_(inv)
    return (top.squeeze(1) + norm.log().squeeze(1) - picked).sum(dtype=torch.float64)


def _low_chunk(h, weight, target, allowed, probs, grad_hidden, grad_weight) -> torch.Tensor:
    """One chunk with low-precision products (``h`` and ``weight`` already converted): the
    softmax reads the low-precision logits, sums in float32 and writes the probabilities the
    two products read (``probs``, (c, n)); the loss is ``-log p[target]``."""
    logits = _masked(h @ weight.t(), allowed)  # (c, n)
    p = torch.softmax(logits, dim=1, out=probs)
    grad_hidden.copy_(p @ weight)
    grad_weight += (p.t() @ h).float()
    picked = p.gather(1, target[:, None]).squeeze(1).double()  # (c,)
    loss = -picked.log()
    far = picked < _TINY  # too small to carry its own logarithm: from the logits instead
    if bool(far.any()):
        rows = logits[far].float()
        loss[far] = (rows.logsumexp(1) - rows.gather(1, target[far, None]).squeeze(1)).double()
    return loss.sum()


class _ChunkedSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, target, allowed, chunk_rows, matmul_dtype):
        n_rows = hidden.shape[0]
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight)
        total = torch.zeros((), dtype=torch.float64, device=hidden.device)
        chunks = [slice(a, min(a + chunk_rows, n_rows)) for a in range(0, n_rows, chunk_rows)]
        if matmul_dtype == torch.float32:
            for rows in chunks:
                mask = None if allowed is None else allowed[rows]
                total += _float32_chunk(hidden[rows], weight, target[rows], mask,
                                        grad_hidden[rows], grad_weight)  # fmt: skip
        else:
            low = hidden.to(matmul_dtype), weight.to(matmul_dtype)
            # The low-precision probabilities, one buffer reused by every chunk.
            probs = torch.empty((min(chunk_rows, n_rows), weight.shape[0]), dtype=matmul_dtype,
                                device=hidden.device)  # fmt: skip
            for rows in chunks:
                mask = None if allowed is None else allowed[rows]
                total += _low_chunk(low[0][rows], low[1], target[rows], mask,
                                    probs[: rows.stop - rows.start], grad_hidden[rows],
                                    grad_weight)  # fmt: skip
        grad_hidden.sub_(weight[target])
        grad_weight.index_add_(0, target, hidden, alpha=-1.0)
        scale = 1.0 / max(n_rows, 1)
        ctx.save_for_backward(grad_hidden.mul_(scale), grad_weight.mul_(scale))
        return (total * scale).to(hidden.dtype)

    @staticmethod
    def backward(ctx, grad):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad, grad_weight * grad, None, None, None, None


def chunked_full_ce(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    allowed: torch.Tensor | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    matmul_dtype: str = "float32",
) -> torch.Tensor:
    """Mean softmax cross-entropy of ``hidden`` (N, d) against every real row of ``weight``
    (n, d) (rows 0 and 1, padding and unknown, are never scored), or against the ``allowed``
    (N, n) items per row; ``target`` (N,) are row indices of ``weight``."""
    if matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(
            f"matmul_dtype must be one of {sorted(MATMUL_DTYPES)}, got {matmul_dtype!r}"
        )
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if hidden.shape[0] == 0:
        raise ValueError("chunked_full_ce: no target rows (an empty batch has no loss)")
    dtype = MATMUL_DTYPES[matmul_dtype]
    return _ChunkedSoftmaxCE.apply(hidden, weight, target, allowed, chunk_rows, dtype)
