"""Profiles, tags and their statistics as Parquet, with a schema version, and incremental update.

Layout of a profile store folder::

    profiles.parquet           one row per pseudonymised user_id: features, trusted-streamer
                               lists, a ``schema_version`` column
    streamer_affinity.parquet  one row per (user_id, streamer_id): visits, loyalty, trusted
    tags.parquet               one row per (user_id, tag_id): confidence, provenance
    stats/users.parquet, stats/pairs.parquet   the mergeable statistics behind the profiles

Every file carries ``recsys.profiling`` metadata (JSON: schema version, as-of time,
categories, topics, day parts); reading a file written under another schema version fails
with a message naming the file and both versions. ``ProfileStore.update(profiler, events)``
merges a new event batch into the stored statistics and rewrites everything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.profiling.features import Profiles
from recsys.profiling.pipeline import Profiler, ProfileResult
from recsys.profiling.stats import ProfileStats

PROFILE_SCHEMA_VERSION = 1
META_KEY = b"recsys.profiling"
LIST_TYPES = {"trusted_streamers": pa.list_(pa.int64()), "trusted_loyalty": pa.list_(pa.float64())}


def write_frame(frame: pd.DataFrame, path: str | Path, meta: dict) -> None:
    """Write ``frame`` with the profiling metadata (schema version added)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = [pa.field(c, LIST_TYPES[c]) if c in LIST_TYPES else None for c in frame.columns]
    if any(fields):
        schema = pa.Schema.from_pandas(frame, preserve_index=False)
        for i, f in enumerate(fields):
            if f is not None:
                schema = schema.set(i, f)
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    info = {"schema_version": PROFILE_SCHEMA_VERSION} | meta
    table = table.replace_schema_metadata(
        (table.schema.metadata or {}) | {META_KEY: json.dumps(info, ensure_ascii=False).encode()}
    )
    pq.write_table(table, path, compression="zstd")


def read_frame(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The frame and its profiling metadata; the schema version must be the current one."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no profile file at {path}")
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a profile file (no {META_KEY.decode()} metadata)")
    meta = json.loads(raw)
    version = meta.get("schema_version")
    if version != PROFILE_SCHEMA_VERSION:
        raise ValueError(
            f"{path}: profile schema version {version}, this code reads {PROFILE_SCHEMA_VERSION}; "
            "rebuild the profiles from events"
        )
    return table.to_pandas(), meta


def _profile_meta(profiles: Profiles) -> dict:
    return {
        "as_of_ts": profiles.as_of_ts,
        "categories": list(profiles.categories),
        "topics": list(profiles.topics),
        "dayparts": list(profiles.dayparts),
    }


def _stats_meta(stats: ProfileStats) -> dict:
    return {
        "ref_ts": stats.ref_ts,
        "half_life_s": stats.half_life_s,
        "categories": list(stats.categories),
        "topics": list(stats.topics),
    }


class ProfileStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def profiles_path(self) -> Path:
        return self.root / "profiles.parquet"

    def exists(self) -> bool:
        return (self.root / "stats" / "users.parquet").exists()

    def save(self, result: ProfileResult) -> None:
        profiles, stats = result.profiles, result.stats
        meta = _profile_meta(profiles)
        users = profiles.users.copy()
        users.insert(
            1, "schema_version", pd.Series(PROFILE_SCHEMA_VERSION, index=users.index, dtype="int16")
        )
        write_frame(users, self.profiles_path, meta)
        write_frame(profiles.streamers, self.root / "streamer_affinity.parquet", meta)
        write_frame(result.tags, self.root / "tags.parquet", meta)
        write_frame(
            stats.users.reset_index(), self.root / "stats" / "users.parquet", _stats_meta(stats)
        )
        write_frame(stats.pairs, self.root / "stats" / "pairs.parquet", _stats_meta(stats))

    def load_profiles(self) -> Profiles:
        users, meta = read_frame(self.profiles_path)
        streamers, _ = read_frame(self.root / "streamer_affinity.parquet")
        return Profiles(
            users=users.drop(columns=["schema_version"]),
            streamers=streamers,
            as_of_ts=int(meta["as_of_ts"]),
            categories=tuple(meta["categories"]),
            topics=tuple(meta["topics"]),
            dayparts=tuple(meta["dayparts"]),
        )

    def load_tags(self) -> pd.DataFrame:
        return read_frame(self.root / "tags.parquet")[0]

    def load_stats(self) -> ProfileStats:
        users, meta = read_frame(self.root / "stats" / "users.parquet")
        pairs, _ = read_frame(self.root / "stats" / "pairs.parquet")
        return ProfileStats(
            users=users.set_index("user_id"),
            pairs=pairs,
            ref_ts=int(meta["ref_ts"]),
            half_life_s=float(meta["half_life_s"]),
            categories=tuple(meta["categories"]),
            topics=tuple(meta["topics"]),
        )

    def update(self, profiler: Profiler, events: pd.DataFrame) -> ProfileResult:
        """Merge ``events`` into the stored statistics (or start from them), save, return."""
        result = (
            profiler.update(self.load_stats(), events) if self.exists() else profiler.build(events)
        )
        self.save(result)
        return result
