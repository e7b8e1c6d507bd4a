"""Generate a synthetic world folder chunk by chunk: entity tables, events, truth, manifest."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from recsys.data.schema import EVENT_TYPES, TABLES
from recsys.data.tables import ENTITY_TABLES, SCHEMA_VERSION, write_table
from recsys.data.vocab import save_vocabs, vocabs_from_frames
from recsys.simulation import catalog as cat
from recsys.simulation.behaviour import (
    FollowState,
    assemble,
    block,
    room_events,
    shopping_events,
)
from recsys.simulation.comments import TemplateBook
from recsys.simulation.config import CHUNK_START_HOUR, SimConfig
from recsys.simulation.schedule import Schedule, build_schedule
from recsys.simulation.truth import truth_tables, write_truth
from recsys.simulation.visits import VisitModel, sample_visits
from recsys.simulation.world import World, build_world

# Independent seed streams: spawn_key (WORLD,), (SCHEDULE,), (CHUNK, day); newcomers'
# first days come from world.ARRIVALS, the market's draws from market.env.MARKET.
WORLD, SCHEDULE, CHUNK = 0, 1, 2
GENERATOR = "recsys.simulation"


def _rng(config: SimConfig, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=key))


def simulate(
    config: SimConfig, out_dir, *, progress: bool = False, overwrite: bool = False
) -> dict:
    """Write the world of ``config`` to ``out_dir``; return its manifest plus ``seconds``.

    Memory stays bounded by one day of events: each chunk is written as
    ``events/part-<day>.parquet`` before the next is generated. An existing world folder is
    replaced only with ``overwrite=True`` (its generated files are removed first).
    """
    began = time.perf_counter()
    out = _prepare(Path(out_dir), overwrite)
    world = build_world(config, _rng(config, WORLD))
    schedule = build_schedule(config, world, _rng(config, SCHEDULE))
    counts = _write_entities(world, schedule, out)
    type_counts, dropped = _write_events(world, schedule, out, progress)
    counts["events"] = int(sum(type_counts.values()))
    truth_counts = write_truth(truth_tables(world, schedule), out / "truth")
    start, _ = config.chunk_window(0)
    manifest = {
        "generator": GENERATOR,
        "preset": config.preset,
        "seed": config.seed,
        "schema_version": SCHEMA_VERSION,
        "counts": counts,
        "event_counts": type_counts,
        "truth_counts": truth_counts,
        "event_parts": config.n_days,
        "time_range": [start, config.chunk_window(config.n_days - 1)[1]],
        "refunds_after_end": dropped,
        "categories": list(config.categories),
        "config": config.to_dict(),
    }
    # The file holds only what the seed determines, so same-seed worlds are byte-identical.
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return {**manifest, "seconds": round(time.perf_counter() - began, 3)}


def _prepare(out: Path, overwrite: bool) -> Path:
    generated = [out / "manifest.json", *(out / f"{t}.parquet" for t in ENTITY_TABLES)]
    generated += sorted((out / "events").glob("part-*.parquet"))
    generated += sorted((out / "truth").glob("*.parquet"))
    generated += sorted((out / "vocab").glob("*.*"))
    existing = [p for p in generated if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds a world ({existing[0].name}); pass overwrite=True"
        )
    for path in existing:
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def entity_frames(world: World, schedule: Schedule) -> dict[str, pd.DataFrame]:
    """The five entity tables of a world (users, streamers, products, sessions, showcase)."""
    u, s, p = world.users, world.streamers, world.products
    names = np.asarray(world.config.categories, dtype=object)
    return {
        "users": pd.DataFrame(
            {
                "user_id": u.pseudonym,
                "age_band": np.asarray(cat.AGE_BANDS, dtype=object)[u.age],
                "gender": np.asarray(cat.GENDERS, dtype=object)[u.gender],
                "region": np.asarray(cat.REGIONS, dtype=object)[u.region],
                "signup_ts": u.signup_ts,
            }
        ),
        "streamers": pd.DataFrame(
            {
                "streamer_id": np.arange(len(s.kol)),
                "category": names[s.category],
                "follower_count": s.followers,
            }
        ),
        "products": pd.DataFrame(
            {
                "product_id": np.arange(len(p.price)),
                "category": names[p.category],
                "brand": p.brand,
                "imported": p.imported,
                "price": p.price,
                "keywords": p.keywords,
            }
        ),
        "live_sessions": pd.DataFrame(
            {
                "session_id": np.arange(len(schedule)),
                "streamer_id": schedule.streamer,
                "start_ts": schedule.start,
                "end_ts": schedule.end,
            }
        ),
        "showcase": pd.DataFrame(
            {
                "session_id": schedule.seg_session,
                "product_id": schedule.seg_product,
                "start_ts": schedule.seg_start,
                "end_ts": schedule.seg_end,
            }
        ),
    }


def _write_entities(world: World, schedule: Schedule, out: Path) -> dict[str, int]:
    frames = entity_frames(world, schedule)
    for name, df in frames.items():
        write_table(df, out / f"{name}.parquet", TABLES[name])
    save_vocabs(vocabs_from_frames(frames), out / "vocab")
    return {name: len(df) for name, df in frames.items()}


class OrganicDays:
    """The world's own behaviour day by day: visits, in-room events, purchases and refunds.

    State carried from day to day (follows, refunds not yet due, the next event id) lives here,
    so days must be generated in order; each day's randomness is its own seed stream.
    """

    def __init__(self, world: World, schedule: Schedule) -> None:
        self.world, self.schedule = world, schedule
        self.model = VisitModel.build(world, CHUNK_START_HOUR)
        self.book = TemplateBook.build(world.config.categories)
        self.follows = FollowState(np.zeros(0, dtype=np.int64))
        self.pending = block("refund", [], [])
        self.next_id = 0

    def blocks(self, day: int) -> dict[str, dict[str, np.ndarray]]:
        """One day's event blocks (``behaviour.block``) without refunds; the refunds of its
        purchases wait in ``pending`` until they fall due (``due``)."""
        rng = _rng(self.world.config, CHUNK, day)
        visits = sample_visits(self.world.on_day(day), self.schedule, self.model, day, rng)
        blocks = room_events(self.world, self.schedule, self.book, visits, self.follows, rng)
        shopping, refunds = shopping_events(self.world, self.schedule, visits, rng)
        self.defer(refunds)
        return blocks | shopping

    def defer(self, refunds: dict[str, np.ndarray]) -> None:
        """Refunds to emit on the day they fall due."""
        self.pending = {k: np.concatenate([self.pending[k], refunds[k]]) for k in self.pending}

    def due(self, day: int) -> dict[str, np.ndarray]:
        """The pending refunds that fall before the end of ``day`` (removed from pending)."""
        due = self.pending["ts"] < self.world.config.chunk_window(day)[1]
        out = {k: a[due] for k, a in self.pending.items()}
        self.pending = {k: a[~due] for k, a in self.pending.items()}
        return out

    def events(self, day: int) -> dict[str, np.ndarray]:
        """One day's events as arrays (``behaviour.assemble``), refunds due that day included."""
        blocks = self.blocks(day)
        return assemble(blocks | {"refund": self.due(day)})

    def frame(self, events: dict[str, np.ndarray]) -> pd.DataFrame:
        """Events as an ``events`` table, numbered on from the previous frame's ids."""
        frame = _events_frame(events, self.next_id, self.world.users.pseudonym, self.book.texts)
        self.next_id += len(frame)
        return frame


def _write_events(world: World, schedule: Schedule, out: Path, progress: bool):
    """Generate and write every chunk; returns counts per event type and refunds never due."""
    config = world.config
    organic = OrganicDays(world, schedule)
    counts = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    days = tqdm(range(config.n_days), desc=f"simulate {config.preset}", disable=not progress)
    for day in days:
        events = organic.events(day)
        frame = organic.frame(events)
        write_table(frame, out / "events" / f"part-{day:05d}.parquet", TABLES["events"])
        counts += np.bincount(events["type"], minlength=len(EVENT_TYPES))
    counts_by_type = {t: int(n) for t, n in zip(EVENT_TYPES, counts, strict=True)}
    return counts_by_type, int(len(organic.pending["ts"]))


def _nullable(ids: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.maximum(ids, 0), ids < 0)


def _events_frame(ev: dict[str, np.ndarray], first_id: int, pseudonyms, texts) -> pd.DataFrame:
    comment = np.where(ev["comment"] >= 0, texts[np.maximum(ev["comment"], 0)], None)
    return pd.DataFrame(
        {
            "event_id": np.arange(first_id, first_id + len(ev["ts"]), dtype=np.int64),
            "ts": ev["ts"],
            "user_id": pseudonyms[ev["user"]],
            "event_type": pd.array(np.asarray(EVENT_TYPES, dtype=object)[ev["type"]], dtype="str"),
            "session_id": _nullable(ev["session"]),
            "streamer_id": _nullable(ev["streamer"]),
            "product_id": _nullable(ev["product"]),
            "dwell_s": ev["dwell"],
            "amount": ev["amount"],
            "coupon_value": ev["coupon"],
            "comment": pd.array(comment, dtype="str"),
        }
    )
