"""Many pooled look-ups in one ``embedding_bag`` call, for inference.

A request of the two-tower's query tower reads fifteen bags from eleven tables. Read one
``F.embedding_bag`` call per bag, the calls' fixed cost (~15-20 us each on a CPU) outweighs
their arithmetic at one request. ``FusedBags`` reads the bags of the same width from a copy
of the tables laid end to end, each table's ids shifted by its first row there, in one call
per width. Every bag is summed by the same kernel, in the same order, with padding (id 0)
skipped as before: the pooled vectors are bit-for-bit those of one call per bag (tests
compare them). An unweighted bag is read with weights of 1, which changes no sum.

The copy is made on first use and remade whenever a table's storage or version changes (an
optimizer step), so it never serves stale rows; only tables of at most ``max_rows`` rows are
copied, larger ones (a platform's user table) are read on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

# One lookup: (table, (R, L) ids with 0 = padding, optional (R, L) weights).
BagRequest = tuple[str, torch.Tensor, torch.Tensor | None]
MAX_FUSED_ROWS = 1 << 20
MAX_LAYOUTS = 64


class FusedBags:
    """Reads ``(table, (R, L) ids, optional (R, L) weights)`` requests in few calls."""

    def __init__(self, tables: Mapping[str, nn.Module], *, max_rows: int = MAX_FUSED_ROWS) -> None:
        """``tables``: name -> module holding the table as ``weight`` (rows, dim)."""
        self.modules = tables
        self.tables = [name for name, m in tables.items() if m.weight.shape[0] <= max_rows]
        self._key: tuple | None = None
        self._table: torch.Tensor | None = None
        self._first: dict[str, int] = {}
        self._layouts: dict[tuple, torch.Tensor] = {}

    def __getstate__(self) -> dict:  # a pickled model carries no copy of its tables
        return {**self.__dict__, "_key": None, "_table": None, "_first": {}, "_layouts": {}}

    def __call__(
        self, requests: Sequence[BagRequest], pool: Callable[..., torch.Tensor]
    ) -> list[torch.Tensor]:
        """(R_i, dim) pooled vectors per request, in order; ``pool(table, ids, weights)``
        reads a request alone (a table too large to copy)."""
        self._refresh()
        out: list[torch.Tensor | None] = [None] * len(requests)
        by_width: dict[int, list[int]] = {}
        for i, (table, ids, _) in enumerate(requests):
            if table in self._first and ids.shape[1] > 0:
                by_width.setdefault(ids.shape[1], []).append(i)
        for group in by_width.values():
            for i, part in zip(group, self._read([requests[i] for i in group]), strict=True):
                out[i] = part
        return [pool(*r) if o is None else o for r, o in zip(requests, out, strict=True)]

    def _refresh(self) -> None:
        """The tables laid end to end, remade when one of them changed since."""
        weights = [self.modules[t].weight for t in self.tables]
        key = tuple((w.data_ptr(), w._version, w.shape[0]) for w in weights)
        if key == self._key:
            return
        with torch.no_grad():
            self._table = torch.cat([w.detach() for w in weights]) if weights else None
        starts = [0]
        for w in weights:
            starts.append(starts[-1] + w.shape[0])
        self._first = dict(zip(self.tables, starts[:-1], strict=False))
        self._layouts = {}
        self._key = key

    def _shifts(self, group: list[BagRequest], device: torch.device) -> torch.Tensor:
        """(sum R_i, 1) first row of each bag's table, kept per layout of requests (a
        service's requests all look alike)."""
        layout = (tuple((t, i.shape[0]) for t, i, _ in group), device)
        shifts = self._layouts.get(layout)
        if shifts is None:
            if len(self._layouts) >= MAX_LAYOUTS:  # batches of many sizes (evaluation)
                self._layouts.clear()
            rows = [self._first[t] for t, n in layout[0] for _ in range(n)]
            shifts = self._layouts[layout] = torch.tensor(rows, device=device)[:, None]
        return shifts

    def _read(self, group: list[BagRequest]) -> list[torch.Tensor]:
        """One call for requests of one width; each (R_i, dim) result in order."""
        sizes = [i.shape[0] for _, i, _ in group]
        ids = torch.cat([i for _, i, _ in group])  # (sum R_i, L)
        ids = ids + (ids > 0) * self._shifts(group, ids.device)  # padding stays 0
        if all(w is None for _, _, w in group):
            weights = torch.ones(ids.shape, device=ids.device)
        else:
            weights = torch.cat(
                [w.float() if w is not None else torch.ones(i.shape, device=i.device)
                 for _, i, w in group]  # fmt: skip
            )
        pooled = F.embedding_bag(
            ids, self._table, per_sample_weights=weights, mode="sum", padding_idx=0
        )
        return list(pooled.split(sizes))
