"""Named datasets: where each one lives, how to read it, and what it must contain.

Public datasets are read from the shared data folder (``data_root``) and checked against the
counts their README gives. ``synthetic-<preset>`` names a simulated live-commerce world: it is
generated once per (preset, seed) into a cache folder and reduced to product (or room)
interactions; its tables ride along for the live split.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recsys.data.interactions import Interactions, ItemFeatures, Split
from recsys.data.live import (
    product_features,
    product_interactions,
    room_features,
    room_interactions,
)
from recsys.data.loaders import read_interaction_table, read_user_item_lines, read_user_sequences
from recsys.data.recbole import read_recbole
from recsys.data.splits import leave_one_out, live_time_split
from recsys.data.tables import LiveCommerceTables, load_tables
from recsys.simulation import SimConfig, simulate

DATA_ENV = "RECSYS_DATA_DIR"
CACHE_ENV = "RECSYS_CACHE_DIR"
SYNTHETIC_PREFIX = "synthetic-"

Format = Literal[
    "user_item_lines", "user_sequences", "item_sequences", "recbole", "table", "synthetic"
]
# Interaction files any path may hold (``read_interactions``); registered datasets are these too.
INTERACTION_FORMATS = ("user_item_lines", "user_sequences", "item_sequences", "recbole", "table")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    format: Format
    folder: str = ""  # under the data root
    file: str = ""  # under the folder; for RecBole the atomic-file prefix
    n_users: int | None = None  # expected counts (from the folder's README)
    n_items: int | None = None
    n_interactions: int | None = None
    protocol: str = ""  # the split the literature uses with this file
    preset: str | None = None  # synthetic worlds only


@dataclass(frozen=True)
class LoadedDataset:
    interactions: Interactions
    item_features: ItemFeatures | None
    user_features: pd.DataFrame | None  # indexed by user index
    spec: DatasetSpec
    tables: LiveCommerceTables | None = None  # synthetic worlds only
    path: Path | None = None
    timed: bool = False  # the order key is a real time, not a position in the file


_LOO = "leave-one-out, full ranking, seen items removed"

DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec(
            "amazon-beauty-bert4rec",
            "user_item_lines",
            "amazon-beauty-bert4rec",
            "beauty.txt",
            40_226,
            54_542,
            353_962,
            _LOO,
        ),
        DatasetSpec(
            "amazon-beauty-s3rec",
            "user_sequences",
            "amazon-beauty-s3rec",
            "Beauty.txt",
            22_363,
            12_101,
            198_502,
            _LOO,
        ),
        DatasetSpec(
            "amazon-games-sasrec",
            "user_item_lines",
            "amazon-games-sasrec",
            "Video.txt",
            31_013,
            23_715,
            287_107,
            _LOO + " (users with < 3 events train only)",
        ),
        DatasetSpec(
            "ml-1m",
            "item_sequences",
            "ml-1m-sasrec-gsasrec-split",
            "train/input.txt",
            6_040,
            3_416,
            987_019,
            _LOO + " on the train/input.txt prefix",
        ),
        DatasetSpec("ml-100k", "recbole", "ml-100k-recbole", "ml-100k", 943, 1_682, 100_000, _LOO),
        DatasetSpec("synthetic-tiny", "synthetic", protocol="live time split", preset="tiny"),
        DatasetSpec("synthetic-small", "synthetic", protocol="live time split", preset="small"),
    )
}


def find_repo_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` that holds a pyproject.toml."""
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return None


def data_root(data_dir: str | Path | None = None) -> Path:
    """The shared data folder: argument, else $RECSYS_DATA_DIR, else ``<repo>/../shared/data``.

    The repository is found by walking up from this package, then from the working directory;
    the first candidate that exists wins, and the first candidate is returned when none does.
    """
    if data_dir is not None:
        return Path(data_dir)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    roots = [find_repo_root(Path(__file__).resolve().parent), find_repo_root(Path.cwd())]
    candidates = [r.parent / "shared" / "data" for r in roots if r is not None]
    if not candidates:
        raise FileNotFoundError(f"no repository root found; set {DATA_ENV} to the data folder")
    return next((c for c in candidates if c.is_dir()), candidates[0])


def dataset_spec(name: str) -> DatasetSpec:
    """The registered spec, or a synthetic spec for any ``synthetic-<preset>``."""
    if name in DATASETS:
        return DATASETS[name]
    if name.startswith(SYNTHETIC_PREFIX):
        preset = name[len(SYNTHETIC_PREFIX) :]
        return DatasetSpec(name, "synthetic", protocol="live time split", preset=preset)
    known = ", ".join(sorted(DATASETS))
    raise KeyError(f"unknown dataset {name!r}; known: {known}, or synthetic-<preset>")


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    target: Literal["product", "room"] = "product",
    cache_dir: str | Path | None = None,
    verify: bool = True,
) -> LoadedDataset:
    """Read a named dataset; counts are checked against the spec when ``verify``.

    ``data_dir`` is the shared data folder for public datasets. ``seed``, ``target`` and
    ``cache_dir`` apply to synthetic worlds only.
    """
    spec = dataset_spec(name)
    if spec.format == "synthetic":
        return load_synthetic(spec, seed=seed, target=target, cache_dir=cache_dir)
    folder = data_root(data_dir) / spec.folder
    if not folder.is_dir():
        raise FileNotFoundError(
            f"dataset {name!r}: folder {folder} not found; pass data_dir or set {DATA_ENV}"
        )
    loaded = _read_public(spec, folder)
    if verify:
        check_counts(loaded)
    return loaded


def _read_public(spec: DatasetSpec, folder: Path) -> LoadedDataset:
    suffix = ".inter" if spec.format == "recbole" else ""
    loaded = read_interactions(folder / f"{spec.file}{suffix}", spec.format, name=spec.name)
    return dataclasses.replace(loaded, spec=spec)


def read_interactions(
    path: str | Path,
    format: str,
    *,
    name: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> LoadedDataset:
    """Any interaction file, registered or not, in one of ``INTERACTION_FORMATS``:
    ``user item`` lines, one line per user (``user_sequences`` with the user id first,
    ``item_sequences`` without), a RecBole ``.inter`` file (its ``.item`` / ``.user`` files
    beside it are read too), or a ``table`` (CSV / TSV / Parquet / JSON Lines) whose user,
    item and optional time columns ``columns`` names (defaults ``user``, ``item``, ``time``)."""
    path = Path(path)
    name = name or path.stem
    spec = DatasetSpec(name, format, str(path.parent), path.name, protocol=_LOO)
    if format == "recbole":
        data = read_recbole(path.parent, path.name.removesuffix(".inter"), name=name)
        return LoadedDataset(data.interactions, data.item_features, data.user_features, spec,
                             path=path, timed=True)  # fmt: skip
    timed = False
    if format == "user_item_lines":
        inter = read_user_item_lines(path, name=name)
    elif format in ("user_sequences", "item_sequences"):
        inter = read_user_sequences(path, user_ids=format == "user_sequences", name=name)
    elif format == "table":
        inter, timed = read_interaction_table(path, name=name, **dict(columns or {}))
    else:
        raise ValueError(f"{path}: format must be one of {INTERACTION_FORMATS}, not {format!r}")
    return LoadedDataset(inter, None, None, spec, path=path, timed=timed)


def check_counts(loaded: LoadedDataset) -> None:
    """Raise when users, items or interactions differ from the spec's expected counts."""
    inter, spec = loaded.interactions, loaded.spec
    found = {
        "users": (inter.user_vocab.n_known, spec.n_users),
        "items": (inter.item_vocab.n_known, spec.n_items),
        "interactions": (len(inter), spec.n_interactions),
    }
    wrong = {k: v for k, v in found.items() if v[1] is not None and v[0] != v[1]}
    if wrong:
        detail = "; ".join(f"{k}: found {got}, expected {want}" for k, (got, want) in wrong.items())
        raise ValueError(f"dataset {spec.name!r} at {loaded.path}: {detail}")


def world_cache_dir(
    preset: str, seed: int, cache_dir: str | Path | None = None, overrides: Mapping | None = None
) -> Path:
    """``<cache>/<preset>-<seed>`` (``_<field><value>`` per override, sorted: a name Hydra
    overrides can carry); cache: argument, $RECSYS_CACHE_DIR, ~/.cache/recsys/worlds."""
    root = cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "recsys" / "worlds"
    suffix = "".join(f"_{k}{v}" for k, v in sorted((overrides or {}).items()))
    return Path(root) / f"{preset}-{seed}{suffix}"


def world_folder(name: str, seed: int = 0, cache_dir: str | Path | None = None) -> Path | None:
    """The folder of dataset ``name`` when it is a synthetic world (generated when missing);
    None for public datasets."""
    spec = dataset_spec(name)
    return ensure_world(spec.preset, seed, cache_dir) if spec.format == "synthetic" else None


def ensure_world(
    preset: str, seed: int, cache_dir: str | Path | None = None, overrides: Mapping | None = None
) -> Path:
    """The folder of a simulated world (the preset with ``overrides`` of its ``SimConfig``
    fields), generating it first when no manifest is there."""
    overrides = dict(overrides or {})
    folder = world_cache_dir(preset, seed, cache_dir, overrides)
    if (folder / "manifest.json").is_file():
        return folder
    # Simulate beside the target and rename, so a half-written world is never picked up.
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    simulate(SimConfig.from_preset(preset, seed=seed, **overrides), tmp, progress=False)
    try:
        tmp.rename(folder)
    except OSError:
        if not (folder / "manifest.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same world first
    return folder


def load_synthetic(
    spec: DatasetSpec,
    *,
    seed: int = 0,
    target: Literal["product", "room"] = "product",
    cache_dir: str | Path | None = None,
) -> LoadedDataset:
    """A simulated world's interactions of the chosen target kind, with features and tables."""
    folder = ensure_world(spec.preset, seed, cache_dir)
    tables = load_tables(folder)
    if target == "room":
        inter = room_interactions(tables)
        features = room_features(tables, inter.item_vocab)
    else:
        inter = product_interactions(tables)
        features = product_features(tables, inter.item_vocab)
    users = _user_frame(tables.users, inter)
    return LoadedDataset(inter, features, users, spec, tables=tables, path=folder)


def _user_frame(users: pd.DataFrame, inter: Interactions) -> pd.DataFrame:
    index = inter.user_vocab.encode(users["user_id"].to_numpy(np.int64))
    out = users.drop(columns="user_id").reset_index(drop=True)
    out.index = pd.Index(index, name="user")
    return out.sort_index()


def make_split(
    dataset: str,
    *,
    target: str = "product",
    data_dir: str | Path | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    path: str | Path | None = None,
    format: str = "world",
    columns: Mapping[str, str] | None = None,
) -> tuple[Split, bool]:
    """The split and whether its times are real timestamps (not file order).

    Public datasets and interaction files use leave-one-out (users with < 3 events train
    only); worlds use the live time split, whose targets carry the rooms or shelves live at
    their time. With ``path``, ``dataset`` only labels the data: a world folder
    (``format="world"``) or an interaction file in one of ``INTERACTION_FORMATS``.
    """
    if path is not None and format == "world":
        tables = load_tables(path)
        return live_time_split(tables, target=target, name=f"{dataset}-{target}"), True
    if path is not None:
        loaded = read_interactions(path, format, name=dataset, columns=columns)
    else:
        loaded = load_dataset(dataset, data_dir, seed=seed, target=target, cache_dir=cache_dir)
    if loaded.tables is not None:
        split = live_time_split(loaded.tables, target=target, name=f"{dataset}-{target}")
        return split, True
    split = leave_one_out(
        loaded.interactions, name=dataset, item_features=loaded.item_features, min_len=3
    )
    return split, loaded.timed
