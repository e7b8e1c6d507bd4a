"""The one place the project talks to FAISS: a thin, typed layer over its Python bindings.

Every index uses the inner-product metric (two-tower scores are dot products). Vectors are
stored under their position ``0..n-1``; callers map positions to their own ids. Positions keep
ID selectors cheap (a bitmap over ``n`` bits) whatever the id space, which may be sparse or
negative (pseudonymised ids).

Search parameters (``nprobe``, ``efSearch``, the refine ``k_factor``) travel with each call as a
``faiss.SearchParameters`` tree instead of being set on the index, so one index can serve
different settings and selectors at once without shared mutable state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np


def set_threads(n: int) -> None:
    """OpenMP threads FAISS uses for training, adding and batch search (process-wide)."""
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    faiss.omp_set_num_threads(int(n))


def threads() -> int:
    return int(faiss.omp_get_max_threads())


def create(dim: int, factory: str) -> faiss.Index:
    """An empty inner-product index from a factory string such as ``"IVF1024,PQ16,RFlat"``."""
    try:
        return faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else str(err)
        raise ValueError(f"invalid FAISS factory string {factory!r}: {first}") from err


def _layers(index: faiss.Index) -> tuple[faiss.Index | None, faiss.Index | None, faiss.Index]:
    """(refine, pre-transform, core): ``[RFlat] -> [OPQ / PCA] -> IVF | HNSW | Flat``."""
    refine = index if isinstance(index, faiss.IndexRefine) else None
    inner = faiss.downcast_index(refine.base_index) if refine is not None else index
    pre = inner if isinstance(inner, faiss.IndexPreTransform) else None
    core = faiss.downcast_index(pre.index) if pre is not None else inner
    return refine, pre, core


def _hnsw(index: faiss.Index) -> faiss.IndexHNSW | None:
    core = _layers(index)[2]
    return core if isinstance(core, faiss.IndexHNSW) else None


def _ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    ivf = faiss.try_extract_index_ivf(_layers(index)[2])
    return faiss.downcast_index(ivf) if ivf is not None else None


def components(index: faiss.Index) -> dict[str, bool]:
    """Which tunable stages the index has: ``{"ivf", "hnsw", "refine"}`` -> present."""
    return {
        "ivf": _ivf(index) is not None,
        "hnsw": _hnsw(index) is not None,
        "refine": _layers(index)[0] is not None,
    }


def own_breadth(index: faiss.Index) -> dict[str, int]:
    """The index's own search breadth and its ceiling: nprobe / nlist, efSearch, where present."""
    ivf, hnsw, out = _ivf(index), _hnsw(index), {}
    if ivf is not None:
        out |= {"nprobe": int(ivf.nprobe), "nlist": int(ivf.nlist)}
    if hnsw is not None:
        out["ef_search"] = int(hnsw.hnsw.efSearch)
    return out


def train(index: faiss.Index, sample: np.ndarray, seed: int) -> None:
    """Train the coarse quantizer / codebooks on ``sample`` (a no-op for indexes that need none)."""
    if index.is_trained:
        return
    ivf = _ivf(index)
    if ivf is not None:
        ivf.cp.seed = int(seed)  # k-means initialisation, so a build is reproducible
    if isinstance(ivf, faiss.IndexIVFPQ):
        # The factory turns on polysemous code training (tens of seconds at any size); it only
        # serves Hamming-threshold search, which this project does not use.
        ivf.do_polysemous_training = False
    index.train(sample)


def add(index: faiss.Index, vectors: np.ndarray) -> None:
    """Append vectors; they get the next positions. IVF indexes keep a position -> entry map."""
    ivf = _ivf(index)
    if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
        ivf.make_direct_map()  # lets ``reconstruct`` fetch a vector by position
    index.add(vectors)


def can_subset(index: faiss.Index) -> bool:
    """Whether ``subset`` can rebuild ``index`` over some of its vectors without training:
    ``IVF*,Flat`` or ``IVF*,PQ*``, bare or under a flat refine stage (no pre-transform)."""
    refine, pre, core = _layers(index)
    if refine is not None and not isinstance(
        faiss.downcast_index(refine.refine_index), faiss.IndexFlat
    ):
        return False
    return pre is None and type(core) in (faiss.IndexIVFFlat, faiss.IndexIVFPQ)


def subset(index: faiss.Index, positions: np.ndarray) -> faiss.Index:
    """A new index of ``index``'s kind holding only the vectors at ``positions`` (stored under
    positions ``0..m-1`` in that order), with ``nprobe`` and the refine ``k_factor`` copied.

    Nothing is trained: the coarse quantizer and PQ codebooks are copies of the trained ones,
    and each vector goes to the inverted list it has in ``index`` (read from the direct map), so
    under equal search settings the subset scans exactly the chosen members of the lists that
    ``index`` would probe. Requires ``can_subset(index)``.
    """
    if not can_subset(index):
        raise ValueError(f"{type(index).__name__}: no IVF stage a subset index can reuse")
    refine, ivf = _layers(index)[0], _ivf(index)
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    core = _empty_ivf(ivf)
    outer = core if refine is None else _refine_flat(core, refine.k_factor)
    vectors = np.ascontiguousarray(reconstruct(index, positions))
    lists = _list_numbers(ivf, positions)
    if lists is None:
        core.add(vectors)  # the copied quantizer assigns each vector the list it has in ``index``
    else:
        core.add_core(len(vectors), faiss.swig_ptr(vectors), None, faiss.swig_ptr(lists))
    if refine is not None:
        outer.refine_index.add(vectors)
        outer.ntotal = core.ntotal
    return outer


def _empty_ivf(ivf: faiss.IndexIVF) -> faiss.IndexIVF:
    """An empty, trained IVF index with copies of ``ivf``'s quantizer and codebooks."""
    quantizer = faiss.clone_index(ivf.quantizer)
    if isinstance(ivf, faiss.IndexIVFPQ):
        pq = ivf.pq
        out = faiss.IndexIVFPQ(quantizer, ivf.d, ivf.nlist, pq.M, pq.nbits, ivf.metric_type)
        out.pq, out.by_residual = pq, ivf.by_residual  # assigning copies the codebooks
        out.use_precomputed_table = ivf.use_precomputed_table
        out.precompute_table()  # what training would have left (nothing for inner product)
    else:
        out = faiss.IndexIVFFlat(quantizer, ivf.d, ivf.nlist, ivf.metric_type)
    out.own_fields = True
    quantizer.this.disown()
    out.is_trained, out.nprobe = True, ivf.nprobe
    out.make_direct_map()
    return out


def _refine_flat(base: faiss.IndexIVF, k_factor: float) -> faiss.IndexRefineFlat:
    out = faiss.IndexRefineFlat(base)
    out.own_fields = True
    base.this.disown()
    out.k_factor = k_factor
    return out


def _list_numbers(ivf: faiss.IndexIVF, positions: np.ndarray) -> np.ndarray | None:
    """The inverted list holding each position, where ``ivf`` keeps an array direct map."""
    if ivf.direct_map.type != faiss.DirectMap.Array:
        return None
    entries = faiss.rev_swig_ptr(ivf.direct_map.array.data(), ivf.ntotal)
    return np.ascontiguousarray(entries[positions] >> 32)  # an entry is list << 32 | offset


@dataclass
class Selector:
    """A FAISS ID selector over positions, with the buffer it points into kept alive."""

    sel: faiss.IDSelector
    count: int
    buffer: np.ndarray | None = field(default=None, repr=False)


def bitmap_selector(positions: np.ndarray, n: int) -> Selector:
    """``IDSelectorBitmap``: one bit per stored vector; O(1) membership, n / 8 bytes."""
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    bits = np.packbits(mask, bitorder="little")  # faiss reads bit i as (bits[i >> 3] >> (i & 7))
    return Selector(faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits)), len(positions), bits)


def batch_selector(positions: np.ndarray) -> Selector:
    """``IDSelectorBatch``: a hash set of the allowed positions (copied by FAISS)."""
    ids = np.ascontiguousarray(positions, dtype=np.int64)
    return Selector(faiss.IDSelectorBatch(len(ids), faiss.swig_ptr(ids)), len(ids), ids)


def search_parameters(
    index: faiss.Index,
    *,
    nprobe: int | None = None,
    ef_search: int | None = None,
    k_factor: float | None = None,
    selector: Selector | None = None,
) -> faiss.SearchParameters:
    """The parameter tree for one search call; the selector goes to the core index.

    Each wrapping stage takes its own parameter object around the inner one; a refine stage
    ignores a selector set on itself, so the selector must ride on the core's parameters.
    """
    refine, pre, _ = _layers(index)
    ivf, hnsw = _ivf(index), _hnsw(index)
    # A parameter object replaces the index's own settings, so unset ones keep the index's.
    if ivf is not None:
        params = faiss.SearchParametersIVF()
        params.nprobe = int(nprobe if nprobe is not None else ivf.nprobe)
    elif hnsw is not None:
        params = faiss.SearchParametersHNSW()
        params.efSearch = int(ef_search if ef_search is not None else hnsw.hnsw.efSearch)
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector.sel  # the bindings keep a reference to the assigned selector
    if pre is not None:
        params = faiss.SearchParametersPreTransform(index_params=params)
    if refine is None:
        return params
    outer = faiss.IndexRefineSearchParameters(base_index_params=params)
    outer.k_factor = float(k_factor) if k_factor is not None else float(refine.k_factor)
    return outer


def search(
    index: faiss.Index, queries: np.ndarray, k: int, params: faiss.SearchParameters
) -> tuple[np.ndarray, np.ndarray]:
    """(B, k) float32 scores and (B, k) int64 positions; FAISS pads with position -1."""
    return index.search(queries, int(k), params=params)


def stored_vectors(index: faiss.Index) -> np.ndarray | None:
    """A zero-copy (n, d) float32 view of full-precision vectors the index keeps, if any."""
    refine = _layers(index)[0]
    holder = index
    if refine is not None:
        holder = faiss.downcast_index(refine.refine_index)
    elif isinstance(index, faiss.IndexHNSW):
        holder = faiss.downcast_index(index.storage)
    if not isinstance(holder, faiss.IndexFlat):
        return None
    return faiss.rev_swig_ptr(holder.get_xb(), holder.ntotal * holder.d).reshape(-1, holder.d)


def reconstruct(index: faiss.Index, positions: np.ndarray) -> np.ndarray:
    """(m, d) float32 vectors at ``positions``: exact where stored, else the codec's decoding."""
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    view = stored_vectors(index)
    if view is not None:
        return view[positions]
    if len(positions) == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    return index.reconstruct_batch(positions)


def write(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def read(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


def version() -> str:
    return str(faiss.__version__)
