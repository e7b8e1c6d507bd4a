"""Named entity embedding tables: the one place the code base touches torchrec.

Every model looks entities up by table name ("product", "streamer", "user", side features
such as "product_category"), so one trained table can serve several models: the sequential
model and the two-tower model share the product and streamer tables by passing the same
``EntityTables``. The tables live in a torchrec ``EmbeddingCollection`` (one feature per table,
named like the table), which is what the sharded multi-device path expects later. On CPU an
``EmbeddingCollection`` needs one embedding dimension for all its tables, so ``dim`` is shared.

Row 0 of every table is the padding index of ``recsys.data.vocab``; lookups zero it, so padding
never contributes to a sum, whatever the row holds.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torchrec import EmbeddingCollection, EmbeddingConfig, KeyedJaggedTensor


class EntityTables(nn.Module):
    """Embedding tables by name, all of width ``dim``, initialised N(0, ``init_std``)."""

    def __init__(
        self,
        *,
        sizes: Mapping[str, int],
        dim: int,
        init_std: float = 0.02,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if not sizes:
            raise ValueError("EntityTables: at least one table is needed")
        bad = {name: n for name, n in sizes.items() if n < 1}
        if bad:
            raise ValueError(f"EntityTables: tables need at least one row, got {bad}")
        self.dim = dim
        self.sizes = dict(sizes)
        configs = [
            EmbeddingConfig(name=name, embedding_dim=dim, num_embeddings=n, feature_names=[name])
            for name, n in self.sizes.items()
        ]
        self.collection = EmbeddingCollection(tables=configs, device=torch.device(device or "cpu"))
        with torch.no_grad():
            for name in self.sizes:
                self.weight(name).normal_(0.0, init_std)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.sizes)

    def weight(self, name: str) -> torch.Tensor:
        """The (rows, dim) parameter of one table (for tied output layers)."""
        if name not in self.sizes:
            raise KeyError(f"no embedding table {name!r}; tables: {', '.join(self.sizes)}")
        return self.collection.embeddings[name].weight

    def forward(self, ids: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Look up id tensors by table name: (B, L_t) ids -> (B, L_t, dim) vectors.

        Every tensor must have the same first (batch) dimension; widths may differ per table.
        """
        unknown = set(ids) - set(self.sizes)
        if unknown:
            raise KeyError(
                f"no embedding tables {sorted(unknown)}; tables: {', '.join(self.sizes)}"
            )
        first = next(iter(ids.values()))
        rows, device = first.shape[0], first.device
        # Every key must be present in the jagged batch; absent tables get empty bags.
        values, lengths = [], []
        for name in self.sizes:
            idx = ids.get(name)
            if idx is not None and idx.shape[0] != rows:
                raise ValueError(f"table {name!r}: batch of {idx.shape[0]} rows, expected {rows}")
            width = idx.numel() // max(rows, 1) if idx is not None else 0
            if idx is not None:
                values.append(idx.reshape(-1))  # (B * L_t,)
            lengths.append(torch.full((rows,), width, dtype=torch.int64, device=device))
        kjt = KeyedJaggedTensor(
            keys=list(self.sizes), values=torch.cat(values), lengths=torch.cat(lengths)
        )
        looked_up = self.collection(kjt)
        out = {}
        for name, idx in ids.items():
            vectors = looked_up[name].values().view(*idx.shape, self.dim)  # (B, L_t, dim)
            out[name] = vectors * (idx > 0).unsqueeze(-1).to(vectors.dtype)
        return out
