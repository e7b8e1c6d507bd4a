"""A part of a global batch, and what it sees of the others: the whole batch's loss from parts.

A distributed step splits the single process's batch into ``P`` contiguous blocks of rows
(``recsys.inputs.batch_parts``; ``recsys.training.distributed_trainer.RankPart``). For the
parts to optimise the single process's objective, not the mean of their own losses, each part
needs a little of the others: how many targets the whole batch holds (a mean over all of them),
and for in-batch negatives, every row's positive. A task states what it needs with
``shares(batch)``; the trainer gathers every part's shares into a ``WholeBatch`` and passes it
to the task, whose loss is then this part's term of the whole batch's loss (the parts' terms sum
to it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WholeBatch:
    """Every part's shares, in part order, and which part this one is (``index``)."""

    shares: Sequence[Mapping[str, torch.Tensor]]
    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < len(self.shares):
            raise ValueError(f"part {self.index} of a batch in {len(self.shares)} parts")

    @property
    def n_parts(self) -> int:
        return len(self.shares)

    @property
    def sizes(self) -> list[int]:
        """Rows of each part (every share holds one value per row)."""
        return [len(next(iter(s.values()))) for s in self.shares]

    @property
    def n_rows(self) -> int:
        """Rows of the whole batch."""
        return sum(self.sizes)

    def total(self, key: str) -> float:
        """The sum over the whole batch of a per-row share."""
        return float(sum(float(s[key].sum()) for s in self.shares))

    def rows(self, key: str) -> torch.Tensor:
        """(B, ...) the per-row share ``key`` of every row, in the whole batch's row order (the
        parts' rows one part after another)."""
        return torch.cat([torch.as_tensor(s[key]) for s in self.shares])

    @property
    def start(self) -> int:
        """This part's first row in the whole batch."""
        return sum(self.sizes[: self.index])

    def own_rows(self) -> torch.Tensor:
        """(b,) the places of this part's rows in the whole batch."""
        return torch.arange(self.start, self.start + self.sizes[self.index])

    def own_items(self, key: str) -> torch.Tensor:
        """(n,) the places of this part's items among the whole batch's, row by row, where the
        per-row share ``key`` counts each row's items (targets flattened in row order)."""
        counts = self.rows(key).long()  # (B,)
        starts = torch.cumsum(counts, 0) - counts
        mine = self.own_rows()
        return torch.cat(
            [starts[r] + torch.arange(int(counts[r])) for r in mine.tolist()]
            or [torch.zeros(0, dtype=torch.long)]
        )
