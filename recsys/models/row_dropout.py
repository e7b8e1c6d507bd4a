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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import nn

ROWS = ("batch", "all")


@dataclass
class _Plan:
    generator: torch.Generator
    start: int  # this part's first row in the whole batch
    stop: int
    n_rows: int  # rows of the whole batch


_PLAN: ContextVar[_Plan | None] = ContextVar("row_dropout_plan", default=None)


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
        if plan is None or not self.training or self.p == 0.0:
            return super().forward(x)
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
