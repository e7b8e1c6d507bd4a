"""Nearest-candidate search over a tower's output vectors, by inner product, under raw ids.

``CandidateIndex.build(vectors, ids, factory=...)`` indexes (n, d) float32 vectors that belong to
the int64 ``ids`` (a vocabulary's entity indices, raw entity ids, or any unique ids but -1, which
marks padding). ``search`` returns those ids, never FAISS positions. The factory string picks
the structure (``Flat`` exact; ``HNSW32,Flat``; ``IVF4096,Flat``; ``IVF1024,PQ16,RFlat`` with
an exact re-rank of ``k_factor * k`` compressed candidates); the search settings of
``IndexConfig`` apply per call, so ``with_params`` gives a differently tuned view of one index.
``subset`` rebuilds an IVF index over some of its vectors without training, reusing the coarse
quantizer and PQ codebooks (live-now sub-indexes, ``recsys.retrieval.live``).

``save(dir)`` writes the FAISS index, the ids and ``index.json`` (config, dimension, count, FAISS
version and a BLAKE2b hash of both files) next to a model checkpoint; ``load`` refuses files
whose hash does not match.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.data.positions import IdPositions
from recsys.retrieval import _faiss

INDEX_FILE, IDS_FILE, META_FILE = "index.faiss", "ids.npy", "index.json"
FORMAT_VERSION = 1
PAD_ID = -1


@dataclass(frozen=True)
class IndexConfig:
    """How to build an index and search it.

    ``train_size``: vectors sampled (with ``seed``) to train IVF / PQ stages; ``None`` uses all
    of them (FAISS subsamples k-means itself). ``nprobe`` (IVF lists visited), ``ef_search``
    (HNSW beam width) and ``k_factor`` (refine over-fetch) default to the index's own settings.
    """

    factory: str = "Flat"
    train_size: int | None = None
    seed: int = 0
    nprobe: int | None = None
    ef_search: int | None = None
    k_factor: float | None = None

    def __post_init__(self) -> None:
        for name in ("train_size", "nprobe", "ef_search"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"IndexConfig.{name} must be >= 1, got {value}")
        if self.k_factor is not None and self.k_factor < 1:
            raise ValueError(f"IndexConfig.k_factor must be >= 1, got {self.k_factor}")

    def search_settings(self) -> dict[str, float | int | None]:
        return {"nprobe": self.nprobe, "ef_search": self.ef_search, "k_factor": self.k_factor}


def check_vectors(x: np.ndarray, dim: int | None, what: str) -> np.ndarray:
    """A C-contiguous (m, dim) float32 array, or a clear error naming the first bad row."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        dtype = getattr(x, "dtype", type(x).__name__)
        raise TypeError(f"{what} must be a float32 numpy array, got {dtype}")
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        want = f"(m, {dim})" if dim is not None else "(m, d)"
        raise ValueError(f"{what} must have shape {want}, got {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"{what} row {int(np.flatnonzero(bad)[0])} has a NaN or infinite value")
    return np.ascontiguousarray(x)


def _check_ids(ids: np.ndarray, n: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu" or ids.ndim != 1 or len(ids) != n:
        raise ValueError(f"ids must be {n} integers in a 1-D array, got {ids.dtype} {ids.shape}")
    ids = ids.astype(np.int64)
    if np.any(ids == PAD_ID):
        raise ValueError(f"ids row {int(np.flatnonzero(ids == PAD_ID)[0])}: id -1 marks padding")
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if len(dup):
        first, second = np.sort(order[dup[0] : dup[0] + 2])
        raise ValueError(f"ids rows {first} and {second} repeat id {ids[first]}")
    return ids


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


class CandidateIndex:
    """A FAISS index plus the raw ids of its vectors; build with ``build`` or ``load``."""

    def __init__(self, index, ids: np.ndarray, config: IndexConfig) -> None:
        self._index, self._ids, self.config = index, ids, config
        self._ids.setflags(write=False)
        self._positions = IdPositions(ids)
        self._check_settings()

    @classmethod
    def build(
        cls, vectors: np.ndarray, ids: np.ndarray, config: IndexConfig | None = None, **fields
    ) -> CandidateIndex:
        """Index ``vectors`` (n, d) float32 under ``ids`` (n,); ``fields`` override ``config``."""
        config = dataclasses.replace(config or IndexConfig(), **fields)
        vectors = check_vectors(vectors, None, "vectors")
        ids = _check_ids(ids, len(vectors))
        index = _faiss.create(vectors.shape[1], config.factory)
        if not index.is_trained:
            _faiss.train(index, _training_sample(vectors, config), config.seed)
        _faiss.add(index, vectors)
        return cls(index, ids, config)

    def _check_settings(self) -> None:
        parts = _faiss.components(self._index)
        needs = {"nprobe": "ivf", "ef_search": "hnsw", "k_factor": "refine"}
        for name, part in needs.items():
            if getattr(self.config, name) is not None and not parts[part]:
                raise ValueError(
                    f"{name} does not apply to factory {self.config.factory!r} (it has no "
                    f"{part.upper()} stage)"
                )

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def ids(self) -> np.ndarray:
        """(n,) int64 id of the vector at each position (read-only)."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def with_params(self, **settings) -> CandidateIndex:
        """The same index searched with other ``nprobe`` / ``ef_search`` / ``k_factor``."""
        unknown = set(settings) - set(self.config.search_settings())
        if unknown:
            raise ValueError(f"not search settings: {sorted(unknown)}")
        view = object.__new__(CandidateIndex)  # shares the index and id lookups, no re-sort
        view.__dict__.update(self.__dict__)
        view.config = dataclasses.replace(self.config, **settings)
        view._check_settings()
        return view

    def widened(self, factor: float) -> CandidateIndex:
        """A view searching ``factor`` times wider: more IVF lists, a wider HNSW beam.

        A selector that admits a share p of the vectors leaves about p of each probed list or
        beam useful, so a filtered search needs a wider one to keep its recall.
        """
        own = _faiss.own_breadth(self._index)
        wider = {}
        if "nprobe" in own:
            base = self.config.nprobe or own["nprobe"]
            wider["nprobe"] = min(own["nlist"], max(base, round(base * factor)))
        if "ef_search" in own:
            base = self.config.ef_search or own["ef_search"]
            wider["ef_search"] = max(base, round(base * factor))
        return self.with_params(**wider) if wider else self

    @property
    def stages(self) -> dict[str, bool]:
        """Which tunable stages the index has: ``{"ivf", "hnsw", "refine"}`` -> present."""
        return _faiss.components(self._index)

    @property
    def can_subset(self) -> bool:
        """Whether ``subset`` applies: ``IVF*,Flat`` or ``IVF*,PQ*``, with or without ``RFlat``."""
        return _faiss.can_subset(self._index)

    def subset(self, positions: np.ndarray) -> CandidateIndex:
        """The vectors at ``positions`` (unique) in an index of this one's kind, searched with
        the same settings; it reuses the trained coarse quantizer and PQ codebooks, so building
        it trains nothing and costs about one pass over the chosen vectors."""
        positions = np.asarray(positions, dtype=np.int64)
        if not self.can_subset:
            raise ValueError(f"factory {self.config.factory!r} has no IVF stage to reuse")
        if len(positions) and (positions.min() < 0 or positions.max() >= len(self)):
            raise ValueError(f"subset positions must lie in [0, {len(self)})")
        if len(np.unique(positions)) != len(positions):
            raise ValueError("subset positions repeat a position")
        return CandidateIndex(
            _faiss.subset(self._index, positions), self._ids[positions], self.config
        )

    def positions(self, ids: np.ndarray, what: str = "ids") -> np.ndarray:
        """Positions of ``ids``; an id that is not indexed is an error naming it."""
        ids = np.asarray(ids, dtype=np.int64)
        at = self._positions.of(ids)
        if len(at) and at.min() < 0:
            bad = int(np.flatnonzero(at < 0)[0])
            raise ValueError(f"{what} row {bad}: id {ids[bad]} is not in the index")
        return at

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """(m, d) float32 stored vectors (decoded, hence approximate, for PQ without refine)."""
        return _faiss.reconstruct(self._index, positions)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product: (B, k) float32 scores and (B, k) int64 ids.

        ``allowed``: ids the results must come from (each must be indexed). Rows with fewer
        than ``k`` results are padded with id -1 and score -inf.
        """
        selector = None
        if allowed is not None:
            pos = np.unique(self.positions(np.asarray(allowed, dtype=np.int64), "allowed"))
            selector = _faiss.bitmap_selector(pos, len(self))
        return self.search_positions(queries, k, selector)

    def search_positions(
        self, queries: np.ndarray, k: int, selector: _faiss.Selector | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``search`` with a prepared selector over positions (see ``recsys.retrieval.live``)."""
        k = check_k(k)
        queries = check_vectors(queries, self.dim, "queries")
        if len(self) == 0 or (selector is not None and selector.count == 0):
            return padding(len(queries), k)
        params = _faiss.search_parameters(
            self._index, **self.config.search_settings(), selector=selector
        )
        scores, pos = _faiss.search(self._index, queries, k, params)
        missing = pos < 0
        scores[missing] = -np.inf
        return scores, np.where(missing, PAD_ID, self._ids[np.maximum(pos, 0)])

    def save(self, directory: str | Path) -> Path:
        """Write the index, ids and metadata into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _faiss.write(self._index, directory / INDEX_FILE)
        np.save(directory / IDS_FILE, self._ids)
        meta = {
            "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(self.config),
            "dim": self.dim,
            "count": len(self),
            "faiss_version": _faiss.version(),
            "content_hash": _content_hash(directory),
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> CandidateIndex:
        """Read an index written by ``save``; its files must match the recorded hash."""
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: no saved candidate index here")
        meta = json.loads(meta_path.read_text())
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{meta_path}: unsupported format_version {version}")
        if _content_hash(directory) != meta["content_hash"]:
            raise ValueError(f"{directory}: {INDEX_FILE} or {IDS_FILE} differ from {META_FILE}")
        index = _faiss.read(directory / INDEX_FILE)
        ids = np.load(directory / IDS_FILE)
        if index.ntotal != meta["count"] or len(ids) != meta["count"] or index.d != meta["dim"]:
            raise ValueError(f"{meta_path}: count or dim disagree with the stored index")
        return cls(index, ids, IndexConfig(**meta["config"]))


def _training_sample(vectors: np.ndarray, config: IndexConfig) -> np.ndarray:
    if config.train_size is None or config.train_size >= len(vectors):
        return vectors
    rows = np.random.default_rng(config.seed).choice(len(vectors), config.train_size, replace=False)
    return vectors[np.sort(rows)]


def padding(b: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((b, k), -np.inf, dtype=np.float32), np.full((b, k), PAD_ID, dtype=np.int64)


def _content_hash(directory: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name in (INDEX_FILE, IDS_FILE):
        with open(directory / name, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()
