"""The data a training run needs: splits per prediction head, and a world's token context.

Public datasets and interaction files (``data=interactions data.path=FILE data.format=...``)
give one head ("product", the items) with the leave-one-out split of the quality benchmark.
A world folder (``data=world data.path=DIR``: ``recsys-ingest``'s or ``recsys-simulate``'s)
is read like a synthetic world. A live-commerce world gives two heads, next product and next
live room ("streamer"), with live time splits cut at the same two times, so one model trained
on the world's tokens before the validation cut is validated and tested on both heads; each
target is ranked among the products on the shelves (or the rooms) live at its time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from recsys.data.interactions import Split
from recsys.data.splits import leave_one_out, live_time_split
from recsys.data.tables import LiveCommerceTables, load_tables
from recsys.datasets import (
    DATASETS,
    INTERACTION_FORMATS,
    SYNTHETIC_PREFIX,
    load_dataset,
    read_interactions,
    world_folder,
)
from recsys.evaluation.protocols import PROTOCOLS
from recsys.inputs.tokens import TokenContext, world_context
from recsys.privacy.tombstones import Tombstones

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    name: str  # a dataset name of recsys.datasets, or synthetic-<preset>
    data_dir: str | None = None  # shared data folder; default $RECSYS_DATA_DIR or ../shared/data
    cache_dir: str | None = None  # synthetic worlds' cache
    world_seed: int = 0
    val_protocol: str = "full"  # protocol of the validation metric that early stopping watches
    protocols: tuple[str, ...] = ("full",)  # protocols of the final evaluation
    valid_frac: float = 0.1  # synthetic worlds: share of target events in each time window
    test_frac: float = 0.1
    # A world folder of the project's tables (recsys-ingest's, recsys-simulate's, a market
    # run's), or with an interaction ``format`` an interaction file; ``name`` then only labels it.
    path: str | None = None
    format: str = "world"  # world | one of recsys.datasets.INTERACTION_FORMATS
    columns: Mapping[str, str] | None = None  # format "table": user / item / time column names

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocols", tuple(self.protocols))
        self._check_source()
        for p in (self.val_protocol, *self.protocols):
            if p not in PROTOCOLS:
                raise ValueError(
                    f"data {self.name!r}: protocol must be one of {PROTOCOLS}, got {p!r}"
                )

    def _check_source(self) -> None:
        """A known format, and a path that holds what the format reads; without a path the
        name must be registered (and the format, when given, its own)."""
        fmt, path, registered = self.format, self.path, DATASETS.get(self.name)
        if fmt != "world" and fmt not in INTERACTION_FORMATS:
            raise ValueError(f"data {self.name!r}: format must be world or one of "
                             f"{INTERACTION_FORMATS}, got {fmt!r}")  # fmt: skip
        if path is None and registered is None and not self.name.startswith(SYNTHETIC_PREFIX):
            raise ValueError(f"data {self.name!r} is neither a registered dataset nor a "
                             "synthetic-<preset> world: set data.path")  # fmt: skip
        if path is None and fmt != "world":
            if registered is None:
                raise ValueError(f"data {self.name!r}: format {fmt!r} needs data.path=FILE")
            if registered.format != fmt:
                raise ValueError(f"data {self.name!r}: the registered file is "
                                 f"{registered.format!r}, not {fmt!r}")  # fmt: skip
        if path is not None and fmt == "world" and not (Path(path) / "events").is_dir():
            raise FileNotFoundError(
                f"data {self.name!r}: {path} has no events/ folder "
                "(a world folder from recsys-ingest or recsys-simulate)"
            )
        if path is not None and fmt != "world" and not Path(path).exists():
            raise FileNotFoundError(f"data {self.name!r}: no interaction file at {path}")


@dataclass(frozen=True)
class SequentialData:
    name: str
    splits: dict[str, Split]  # head ("product", "streamer") -> split
    context: TokenContext | None  # a world's full token streams; None for public datasets
    tables: LiveCommerceTables | None = None  # a world's tables (entity features, schedules)

    @property
    def train_split(self) -> Split:
        return self.splits["product"]

    def vocabularies(self) -> dict[str, np.ndarray]:
        """Raw ids of every vocabulary, saved in checkpoints to check data on reload."""
        out = {"user": self.train_split.user_vocab.ids}
        out.update({head: split.item_vocab.ids for head, split in self.splits.items()})
        return out

    def check_vocabularies(self, saved: dict[str, np.ndarray], where: str) -> None:
        for name, ids in self.vocabularies().items():
            if name not in saved or not np.array_equal(np.asarray(saved[name]), ids):
                raise ValueError(
                    f"{where}: the {name!r} vocabulary differs from the one the model was "
                    f"trained with (dataset {self.name!r}); the data changed"
                )


def world_folder_of(config: DataConfig) -> Path | None:
    """The world folder the data comes from (None for public datasets and interaction files)."""
    if config.format != "world":
        return None
    if config.path is not None:
        return Path(config.path)
    return world_folder(config.name, config.world_seed, config.cache_dir)


def load_sequential_data(config: DataConfig) -> SequentialData:
    if config.path is not None and config.format == "world":
        return _world_data(config, load_tables(config.path))
    if config.path is not None:
        loaded = read_interactions(config.path, config.format, name=config.name,
                                   columns=config.columns)  # fmt: skip
    else:
        loaded = load_dataset(
            config.name, config.data_dir, seed=config.world_seed, cache_dir=config.cache_dir
        )
    if loaded.tables is None:
        split = leave_one_out(
            loaded.interactions, name=config.name, item_features=loaded.item_features, min_len=3
        )
        return SequentialData(config.name, {"product": split}, None)
    return _world_data(config, loaded.tables)


def without_forgotten(tables: LiveCommerceTables, folder: Path | None) -> LiveCommerceTables:
    """``tables`` without the rows of users ``folder``'s tombstones list (recsys-forget): what
    a model trains and is evaluated on never holds a forgotten viewer."""
    gone = Tombstones.read(folder) if folder is not None else Tombstones()
    if not len(gone):
        return tables
    out = replace(tables, users=gone.keep(tables.users), events=gone.keep(tables.events))
    n = len(tables.events) - len(out.events)
    if n:
        log.info("tombstones of %s: %d events of forgotten users left out", folder, n)
    return out


def _world_data(config: DataConfig, tables: LiveCommerceTables) -> SequentialData:
    tables = without_forgotten(tables, world_folder_of(config))
    product = live_time_split(
        tables,
        target="product",
        valid_frac=config.valid_frac,
        test_frac=config.test_frac,
        name=f"{config.name}-product",
    )
    cuts = {"valid_ts": product.meta["valid_ts"], "test_ts": product.meta["test_ts"]}
    room = live_time_split(tables, target="room", name=f"{config.name}-room", **cuts)
    return SequentialData(
        config.name, {"product": product, "streamer": room}, world_context(tables), tables
    )
