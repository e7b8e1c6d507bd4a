"""Named entity embedding tables: the one place the code base touches torchrec.

Every model looks entities up by table name ("product", "streamer", "user", side features
such as "product_category"), so one trained table can serve several models: the sequential
model and the two-tower model share the product and streamer tables by passing the same
``EntityTables``. The tables live in a torchrec ``EmbeddingCollection`` (one feature per table,
named like the table), which is what the sharded multi-device path expects. On one device the
tables are read directly (``F.embedding``, the same rows and gradients), so single-device
training needs no fbgemm kernel, on CPU or CUDA. On CPU an
``EmbeddingCollection`` needs one embedding dimension for all its tables, so ``dim`` is shared.

``EntityBags`` is the pooled counterpart for models that sum bags of ids (the two-tower
model's recent-products bag, a product's keywords): a torchrec ``EmbeddingBagCollection``,
fed one ``KeyedJaggedTensor`` per call once sharded. Its tables carry the same names and shapes as
``EntityTables``, so trained weights move between the two (``EntityBags.load_from``), or are
tied to one parameter.

Row 0 of every table is the padding index of ``recsys.data.vocab``; lookups zero it, so padding
never contributes to a sum, whatever the row holds.

For sharded training (``recsys.training.distributed``) ``EntityTables.as_bags`` moves the rows
into an ``EmbeddingBagCollection`` read as bags of one id: on CPU torchrec shards that form
with every sharding type and the dense kernel, and whole tables (tied output layers) are then
read through the collection, since a sharded table has no local weight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torchrec import (
    EmbeddingBagCollection,
    EmbeddingBagConfig,
    EmbeddingCollection,
    EmbeddingConfig,
    KeyedJaggedTensor,
)

from recsys.models.fused_bags import BagRequest, FusedBags


def _check_sizes(owner: str, sizes: Mapping[str, int]) -> None:
    if not sizes:
        raise ValueError(f"{owner}: at least one table is needed")
    bad = {name: n for name, n in sizes.items() if n < 1}
    if bad:
        raise ValueError(f"{owner}: tables need at least one row, got {bad}")


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
        _check_sizes("EntityTables", sizes)
        self.dim = dim
        self.sizes = dict(sizes)
        configs = [
            EmbeddingConfig(name=name, embedding_dim=dim, num_embeddings=n, feature_names=[name])
            for name, n in self.sizes.items()
        ]
        self.collection = EmbeddingCollection(tables=configs, device=torch.device(device or "cpu"))
        self.bags = False  # True after ``as_bags``
        with torch.no_grad():
            for name in self.sizes:
                self.weight(name).normal_(0.0, init_std)

    def as_bags(self) -> None:
        """Hold the same rows in an ``EmbeddingBagCollection`` read as bags of one id (the form
        sharded on CPU); state-dict keys become ``collection.embedding_bags.<table>.weight``."""
        if self.bags:
            return
        device = self.collection.embeddings[self.names[0]].weight.device
        configs = [
            EmbeddingBagConfig(
                name=name, embedding_dim=self.dim, num_embeddings=n, feature_names=[name]
            )  # fmt: skip
            for name, n in self.sizes.items()
        ]
        bags = EmbeddingBagCollection(tables=configs, device=device)
        with torch.no_grad():
            for name in self.sizes:
                bags.embedding_bags[name].weight.copy_(self.weight(name))
        self.collection, self.bags = bags, True
        self.whole: dict[str, torch.Tensor] = {}

    # Sharded collections need one jagged-batch stride on every rank; the sharding wrapper
    # sets this to the largest stride over the ranks.
    common_stride: Callable[[int], int] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.sizes)

    def weight(self, name: str) -> torch.Tensor:
        """The (rows, dim) parameter of one table (for tied output layers)."""
        if name not in self.sizes:
            raise KeyError(f"no embedding table {name!r}; tables: {', '.join(self.sizes)}")
        if self.bags:
            if isinstance(self.collection, EmbeddingBagCollection):
                return self.collection.embedding_bags[name].weight
            if name not in self.whole:
                raise RuntimeError(
                    f"table {name!r} is sharded: read it whole with fetch_whole first"
                )
            return self.whole[name]
        return self.collection.embeddings[name].weight

    def fetch_whole(self, names: Sequence[str], device: torch.device) -> list[torch.Tensor]:
        """Every row of the named sharded tables (padding rows included) in one lookup, kept
        for ``weight`` until the next fetch; the same call on every rank."""
        stride = max(self.sizes[n] for n in names)
        values, lengths = [], []
        for table in self.sizes:
            n = self.sizes[table] if table in names else 0
            values.append(torch.arange(n, dtype=torch.int64, device=device))
            lengths += [torch.ones(n, dtype=torch.int64, device=device),
                        torch.zeros(stride - n, dtype=torch.int64, device=device)]  # fmt: skip
        kjt = KeyedJaggedTensor(
            keys=list(self.sizes), values=torch.cat(values), lengths=torch.cat(lengths)
        )
        pooled = self.collection(kjt).to_dict()
        self.whole = {n: pooled[n][: self.sizes[n]] for n in names}
        return list(self.whole.values())

    def _bag_lookup(self, ids: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """(B, L_t, dim) rows through a (sharded) bag collection: each id its own bag, padding
        ids empty bags (zero vectors)."""
        stride = max(idx.numel() for idx in ids.values())
        stride = self.common_stride(stride) if self.common_stride is not None else stride
        device = next(iter(ids.values())).device
        values, lengths = [], []
        for name in self.sizes:
            flat = ids[name].reshape(-1) if name in ids else torch.zeros(0, dtype=torch.int64)
            real = flat > 0
            values.append(flat[real])
            pad = torch.zeros(stride - len(flat), dtype=torch.int64, device=device)
            lengths += [real.to(torch.int64), pad]
        kjt = KeyedJaggedTensor(
            keys=list(self.sizes), values=torch.cat(values), lengths=torch.cat(lengths)
        )
        pooled = self.collection(kjt).to_dict()
        return {name: pooled[name][: idx.numel()].view(*idx.shape, self.dim)
                for name, idx in ids.items()}  # fmt: skip

    def forward(self, ids: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Look up id tensors by table name: (B, L_t) ids -> (B, L_t, dim) vectors.

        Every tensor must have the same first (batch) dimension; widths may differ per table.
        An unsharded collection is read table by table (the rows and gradients its own
        ``nn.Embedding`` modules give), so one device needs none of the jagged batch's
        bookkeeping and no fbgemm kernel; sharded tables are read through the collection.
        """
        unknown = set(ids) - set(self.sizes)
        if unknown:
            raise KeyError(
                f"no embedding tables {sorted(unknown)}; tables: {', '.join(self.sizes)}"
            )
        if self.bags:
            return self._bag_lookup(ids)
        rows = next(iter(ids.values())).shape[0]
        for name, idx in ids.items():
            if idx.shape[0] != rows:
                raise ValueError(f"table {name!r}: batch of {idx.shape[0]} rows, expected {rows}")
        return {name: self._rows(name, idx) for name, idx in ids.items()}

    def _rows(self, name: str, idx: torch.Tensor) -> torch.Tensor:
        """(B, L_t, dim) rows of one table, zero at padding ids."""
        return _zero_padding(F.embedding(idx, self.weight(name)), idx)


def _zero_padding(vectors: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(..., dim) looked-up rows with the rows of padding ids (0) set to zero."""
    return vectors * (idx > 0).unsqueeze(-1).to(vectors.dtype)


class EntityBags(nn.Module):
    """Pooled embedding tables by name: each request's bag of ids -> the weighted sum of rows.

    Tables are of width ``dim``, initialised N(0, ``init_std``), row 0 the padding index: ids 0
    are left out of the jagged batch, so padding never reaches a sum (nor its gradient).

    ``portable_pooling`` sums bags of several ids in PyTorch from their looked-up rows instead
    of in the lookup kernel. Kernels round weighted sums differently (FBGEMM's sharded one and
    PyTorch's ``embedding_bag`` differ in the last bits), so this is what makes a sharded run
    and an unsharded one agree to the bit; it holds every bag's rows at once (bags x ids x
    ``dim`` floats) where the kernel holds one sum per bag.
    """

    common_stride: Callable[[int], int] | None = None  # as for ``EntityTables``

    def __init__(
        self,
        *,
        sizes: Mapping[str, int],
        dim: int,
        init_std: float = 0.02,
        device: torch.device | str | None = None,
        portable_pooling: bool = False,
    ) -> None:
        super().__init__()
        _check_sizes("EntityBags", sizes)
        self.dim, self.sizes = dim, dict(sizes)
        self.portable_pooling = portable_pooling
        # Tables read since the trainer last cleared it: unsharded, a table no request reads
        # gets no gradient (and no optimizer step); sharded tables share one gradient buffer,
        # so the trainer drops those that were not read (recsys.training.distributed).
        self.read: set[str] = set()
        configs = [
            EmbeddingBagConfig(name=name, embedding_dim=dim, num_embeddings=n, feature_names=[name])
            for name, n in self.sizes.items()
        ]
        self.collection = EmbeddingBagCollection(
            tables=configs, is_weighted=True, device=torch.device(device or "cpu")
        )
        self._fused = FusedBags(self.collection.embedding_bags)
        with torch.no_grad():
            for name in self.sizes:
                self.weight(name).normal_(0.0, init_std)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.sizes)

    def weight(self, name: str) -> torch.Tensor:
        """The (rows, dim) parameter of one table."""
        if name not in self.sizes:
            raise KeyError(f"no embedding table {name!r}; tables: {', '.join(self.sizes)}")
        return self.collection.embedding_bags[name].weight

    def load_from(
        self, tables: EntityTables | EntityBags, names: Sequence[str], *, tie: bool = False
    ) -> None:
        """Copy (or with ``tie``, share) the named tables of another model's tables.

        Shapes must agree: both sides index entities with the same vocabularies.
        """
        for name in names:
            source = tables.weight(name)
            target = self.weight(name)
            if source.shape != target.shape:
                raise ValueError(
                    f"table {name!r}: source is {tuple(source.shape)}, "
                    f"this model's is {tuple(target.shape)}; the vocabularies or dims differ"
                )
            if tie:
                self.collection.embedding_bags[name].weight = source
            else:
                with torch.no_grad():
                    target.copy_(source)

    def forward(self, requests: Sequence[BagRequest]) -> list[torch.Tensor]:
        """(R_i, dim) pooled vectors per request, in order, from one collection call.

        A table's requests are stacked along the bag axis; every table's bags are padded with
        empty ones to the longest stack, as a jagged batch has one stride for all its keys.
        An unsharded collection is read table by table instead: the same sums and gradients,
        without the jagged batch's bookkeeping (which costs more than the lookups of a small
        batch, and needs fbgemm kernels for the device).
        """
        unknown = sorted({t for t, _, _ in requests} - set(self.sizes))
        if unknown:
            raise KeyError(f"no embedding tables {unknown}; tables: {', '.join(self.sizes)}")
        self.read.update(t for t, _, _ in requests)
        if self.portable_pooling:
            return self._pooled_here(requests)
        return self._lookup(requests)

    def _pooled_here(self, requests: Sequence[BagRequest]) -> list[torch.Tensor]:
        """Every bag's rows looked up one id at a time and summed here (``portable_pooling``).

        Unsharded, a table's requests are read with one ``F.embedding`` call, whose backward
        adds each row's gradients one by one in the order of the stacked requests, as the
        sharded kernel does with the jagged batch."""
        flat = [(t, ids.reshape(-1, 1), None) for t, ids, _ in requests]
        if isinstance(self.collection, EmbeddingBagCollection):
            rows = self._rows_per_table(flat)
        else:
            rows = self._lookup(flat)
        out = []
        for (_, ids, w), got in zip(requests, rows, strict=True):
            real = ids > 0  # (R, L): padding adds nothing, nor gets a gradient through w
            w = real.float() if w is None else torch.where(real, w.float(), 0.0)
            e = got.view(*ids.shape, self.dim)  # (R, L, dim)
            out.append((w.unsqueeze(-1) * e).sum(dim=1))
        return out

    def _rows_per_table(self, requests: Sequence[BagRequest]) -> list[torch.Tensor]:
        """(R_i, dim) rows of one-id requests, one ``F.embedding`` call per table."""
        per_table = _by_table(requests)
        out: list[torch.Tensor] = [None] * len(requests)
        for table, idx in per_table.items():
            ids = torch.cat([requests[i][1][:, 0] for i in idx])
            rows = F.embedding(ids, self.weight(table), padding_idx=0)
            rows = torch.where((ids > 0)[:, None], rows, 0.0)  # as the kernels: padding is 0
            for i, part in zip(idx, rows.split([len(requests[i][1]) for i in idx]), strict=True):
                out[i] = part
        return out

    def _lookup(self, requests: Sequence[BagRequest]) -> list[torch.Tensor]:
        if isinstance(self.collection, EmbeddingBagCollection):
            if not torch.is_grad_enabled() and len(requests) > 1:  # inference: fewer calls
                return self._fused(requests, self._pool)
            return [self._pool(table, ids, w) for table, ids, w in requests]
        device = requests[0][1].device
        per_table = _by_table(requests)
        stride = max(sum(requests[i][1].shape[0] for i in idx) for idx in per_table.values())
        stride = self.common_stride(stride) if self.common_stride is not None else stride
        values, weights, lengths = [], [], []
        for table in self.sizes:
            n_bags = 0
            for i in per_table.get(table, ()):
                _, ids, w = requests[i]
                real = ids > 0  # (R, L)
                values.append(ids[real])
                weights.append(w[real].float() if w is not None else real[real].float())
                lengths.append(real.sum(dim=1))
                n_bags += ids.shape[0]
            lengths.append(torch.zeros(stride - n_bags, dtype=torch.int64, device=device))
        kjt = KeyedJaggedTensor(
            keys=list(self.sizes),
            values=torch.cat(values),
            weights=torch.cat(weights),
            lengths=torch.cat(lengths),
        )
        pooled = self.collection(kjt).to_dict()  # table -> (stride, dim)
        out: list[torch.Tensor] = [None] * len(requests)
        for table, idx in per_table.items():
            sizes = [requests[i][1].shape[0] for i in idx]
            parts = pooled[table][: sum(sizes)].split(sizes)
            for i, part in zip(idx, parts, strict=True):
                out[i] = part
        return out

    def _pool(self, table: str, ids: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """(R, dim) weighted sums of one request's (R, L) bags; padding ids contribute nothing."""
        if ids.shape[1] == 0:
            return torch.zeros(ids.shape[0], self.dim, device=ids.device)
        w = weights.float() if weights is not None else None
        return F.embedding_bag(
            ids, self.weight(table), per_sample_weights=w, mode="sum", padding_idx=0
        )


def _by_table(requests: Sequence[BagRequest]) -> dict[str, list[int]]:
    """Per table, the positions of its requests, in order."""
    out: dict[str, list[int]] = {}
    for i, (table, _, _) in enumerate(requests):
        out.setdefault(table, []).append(i)
    return out
