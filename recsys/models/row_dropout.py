"""Dropout whose masks belong to the rows of the whole batch, however the batch is split.

``nn.Dropout`` draws from the process's generator, so a batch split over ranks draws other masks
than one process would: the runs differ by more than rounding. Inside ``whole_batch_rows``, a
``RowDropout`` draws instead the mask of the *whole* batch from a generator seeded by the step
(the same stream on every rank and in one process) and keeps the rows of its part, so each row
is dropped as it would be in one process. Outside it, ``RowDropout`` is ``nn.Dropout``.

The dropped tensor's first dimension is either the batch's rows (``rows="batch"``) or a set
every part computes whole (``rows="all"``, e.g. the two-tower's in-batch candidates). With
``width``, the second dimension is a right-aligned, left-padded sequence of at most ``width``
positions (the sequential model's windows: a part may be narrower than the whole batch).

Outside a plan, the masks are ``nn.Dropout``'s to the bit, drawn faster. Where torch has no
vectorised Bernoulli sampler (every CPU but Intel ones with MKL), ``bernoulli_`` takes one 64-bit
draw per element through a slow per-element path: most of a dropout call on a (128, 200, 50)
batch. ``bernoulli_draws`` takes the same 64-bit draws in bulk (``random_``) and compares
their low 53 bits with the same threshold, so masks, outputs, gradients and the generator's
state afterwards are those of ``nn.Dropout``; it is used only where a check at first use finds
torch's own sampler drawing exactly these numbers, and ``F.dropout`` everywhere else.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import torch
from torch import nn
from torch.nn import functional as F

ROWS = ("batch", "all")


@dataclass
class _Plan:
    generator: torch.Generator
    start: int  # this part's first row in the whole batch
    stop: int
    n_rows: int  # rows of the whole batch


_PLAN: ContextVar[_Plan | None] = ContextVar("row_dropout_plan", default=None)
_LOW_53_BITS = (1 << 53) - 1


def bernoulli_draws(
    shape: torch.Size | tuple[int, ...], keep: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Boolean (shape) mask, True with probability ``keep``: what ``bernoulli_(keep)`` draws on
    a CPU without a vectorised sampler, element by element, a uniform double of 53 random bits
    (``(v & (2**53 - 1)) * 2**-53 < keep``), from one 64-bit draw per element in bulk."""
    threshold = math.ceil(Fraction(keep) * 2**53)  # u < keep  <=>  53 bits < threshold
    draws = torch.empty(shape, dtype=torch.int64).random_(generator=generator)
    return draws.bitwise_and_(_LOW_53_BITS) < threshold


@cache
def bulk_draws_match_torch() -> bool:
    """Whether this torch, on this CPU, draws ``bernoulli_`` masks as ``bernoulli_draws`` does
    (checked once on 1,001 elements, the generator's state afterwards included)."""
    theirs, ours = (torch.Generator().manual_seed(20240601) for _ in range(2))
    expected = torch.empty(1001).bernoulli_(0.8, generator=theirs)
    mask = bernoulli_draws((1001,), 0.8, generator=ours)
    return torch.equal(expected, mask.float()) and torch.equal(theirs.get_state(), ours.get_state())


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """``F.dropout(x, p, training=True)``, the same numbers from the same generator: dense
    float32 CPU tensors take ``bernoulli_draws`` where ``bulk_draws_match_torch``."""
    fast = x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous()
    if not (fast and 0.0 < p < 1.0 and bulk_draws_match_torch()):
        return F.dropout(x, p, training=True)
    keep = 1.0 - p
    noise = bernoulli_draws(x.shape, keep).to(x.dtype).div_(keep)  # as torch scales its mask
    return x * noise


@contextmanager
def whole_batch_rows(seed: int, *, start: int, stop: int, n_rows: int) -> Iterator[None]:
    """Within the block, ``RowDropout`` masks are the whole batch's rows ``start:stop`` of
    ``n_rows``, drawn from ``seed`` (call it with the same seed for every part of a step)."""
    if not 0 <= start <= stop <= n_rows:
        raise ValueError(f"rows {start}:{stop} are not rows of a batch of {n_rows}")
    token = _PLAN.set(_Plan(torch.Generator().manual_seed(seed), start, stop, n_rows))
    try:
        yield
    finally:
        _PLAN.reset(token)


class RowDropout(nn.Dropout):
    def __init__(self, p: float = 0.5, *, rows: str = "batch", width: int | None = None) -> None:
        super().__init__(p)
        if rows not in ROWS:
            raise ValueError(f"rows must be one of {ROWS}, got {rows!r}")
        self.rows, self.width = rows, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = _PLAN.get()
        if not self.training or self.p == 0.0:
            return x
        if plan is None:
            return dropout(x, self.p)
        keep = self._drawn(plan, x.shape) >= self.p
        return x * keep.to(x.device, x.dtype) / (1.0 - self.p)

    def _drawn(self, plan: _Plan, shape: torch.Size) -> torch.Tensor:
        """Uniform draws of this part's elements, taken from the whole batch's."""
        rest = list(shape[1:])
        if self.width is not None:
            if rest[0] > self.width:
                raise ValueError(f"RowDropout: {rest[0]} positions, wider than {self.width}")
            rest[0] = self.width
        if self.rows == "all":
            u = torch.rand((shape[0], *rest), generator=plan.generator)
        else:
            if shape[0] != plan.stop - plan.start:
                raise ValueError(
                    f"RowDropout: {shape[0]} rows, but this part holds rows "
                    f"{plan.start}:{plan.stop} of the whole batch"
                )
            u = torch.rand((plan.n_rows, *rest), generator=plan.generator)[plan.start : plan.stop]
        if self.width is not None:
            u = u[:, self.width - shape[1] :]  # (rows, L, ...): right-aligned windows
        return u
