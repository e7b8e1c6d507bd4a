"""`recsys-serve`: run the recommendation service over a live-commerce world (Hydra app).

With ``checkpoint=`` (a two-tower run, indexed by ``recsys-index``; optionally
``ranker_checkpoint=<ranker.pt>`` from ``recsys-rank``) it serves the trained pipeline
(``recsys.serving.trained``) over the world that run trained on; without it, the
``PopularityLiveService``: what is live at the clock's time, by recent popularity, boosted by
each viewer's session.
"""

from __future__ import annotations

import gc
import logging
import sys
from functools import partial
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _tables(world: DictConfig):
    from recsys.data.tables import load_tables
    from recsys.datasets import ensure_world

    folder = world.get("path") or world.data_dir
    if folder:
        return load_tables(Path(folder))
    return load_tables(ensure_world(world.preset, int(world.seed), world.cache_dir))


def _start_time(start, tables) -> int:
    if isinstance(start, int):
        return start
    if start == "last_event" and len(tables.events):
        return int(tables.events["ts"].max()) + 1
    sessions = tables.live_sessions
    if start == "latest_live" and len(sessions):
        last = sessions.loc[sessions["start_ts"].idxmax()]
        return (int(last["start_ts"]) + int(last["end_ts"])) // 2
    raise ValueError(
        f"serve: clock.start={start!r}: expected latest_live or last_event (of a world that has "
        "live sessions / events), wall, or Unix seconds"
    )


def _clock(clock: DictConfig, tables):
    """The service clock and the time it starts at (history before it, live state at it)."""
    from recsys.serving.clock import ReplayClock, WallClock

    if clock.start == "wall":
        wall = WallClock()
        return wall, wall()
    start = _start_time(clock.start, tables)
    return ReplayClock(start, float(clock.speed)), start


def limit_threads(n: int) -> None:
    """Math threads of the process. Requests are served one at a time and each is small:
    extra threads only spin next to the one doing the work, on the cores the event loop and
    clients need."""
    import torch
    from threadpoolctl import threadpool_limits

    from recsys.retrieval import set_threads

    torch.set_num_threads(n)
    set_threads(n)
    threadpool_limits(limits=n, user_api="blas")


def _switch_interval(ms: float) -> None:
    """How soon the event loop gets the interpreter lock back from the recommender thread:
    a shed request's 429 waits for it, so it bounds how fast overload is answered."""
    if not ms > 0:
        raise ValueError(f"serve: switch_interval_ms must be > 0, got {ms}")
    sys.setswitchinterval(ms / 1000.0)


def _section(cfg: DictConfig, name: str) -> dict:
    return OmegaConf.to_container(cfg[name], resolve=True)


def build_app(cfg: DictConfig):
    """The FastAPI app the config describes (without starting a server)."""
    from recsys.data.validation.online import EventWindow
    from recsys.ranking.session import SessionConfig
    from recsys.serving import create_app
    from recsys.serving.admission import AdmissionConfig

    _check_state(cfg)
    threads = int(cfg.threads)
    limit_threads(threads)
    _switch_interval(float(cfg.switch_interval_ms))
    session = SessionConfig(**_section(cfg, "session"))
    window = EventWindow(**_section(cfg, "validation"))
    service, clock, start, checker = (_trained if cfg.checkpoint else _popularity)(
        cfg, session, window
    )
    service = _shared_state(cfg, service)
    log.info("serving from %s; %s", start, service.health(start))
    # What is loaded lives as long as the server: keep it out of the collector's full passes
    # (~0.3 s each over the 100k-product world's objects, a stall for every request waiting).
    gc.collect()
    gc.freeze()
    # OpenMP thread counts are per thread: the worker sets its own.
    app = create_app(
        service,
        clock=clock,
        checker=checker,
        admission=AdmissionConfig(**_section(cfg, "admission")),
        auth=_auth(cfg),
        worker_init=partial(limit_threads, threads),
    )
    book = _consent_book(cfg, service)
    app = _coupons(cfg, app, book) if cfg.get("coupons") and cfg.coupons.model else app
    return _erasure(_live_rooms(cfg, _attach_consent(app, book)))


def _erasure(app):
    """``POST /forget``: users out of the service's sessions, logs and live rooms."""
    from recsys.erasure.service import attach_erasure

    return attach_erasure(app)


def _consent_book(cfg: DictConfig, service):
    """The consent book of ``consent.path`` (a folder with consent.parquet; default: the
    world folder of ``world``); a world without one: everyone keeps the default."""
    from recsys.datasets import ensure_world
    from recsys.privacy.consent import ConsentBook

    c, w = cfg.get("consent") or {}, cfg.world
    folder = c.get("path") or w.get("path") or w.get("data_dir")
    if not folder and not cfg.checkpoint:
        folder = ensure_world(w.preset, int(w.seed), w.cache_dir)
    default = bool(c.get("default", True))
    book = ConsentBook.read(folder, default=default) if folder else ConsentBook(default=default)
    return _shared_consent(cfg, book, service.log) if cfg.state.backend == "redis" else book


def _shared_consent(cfg: DictConfig, book, events):
    """With state in Redis, every worker folds the same ordered consent decisions: one posted
    to any worker holds for the next request on all of them. Every request that reads the
    event log asks consent first, so the log's read rides on the consent list's."""
    # Only a Redis-backed service needs the client library.
    from recsys.privacy.shared_consent import share_consent
    from recsys.serving.redis_log import RedisBatches

    batches = RedisBatches(url=cfg.state.redis_url, key=str(cfg.consent.key))
    shared = share_consent(book, batches, fresh=bool(cfg.state.fresh))
    log.info("consent shared in Redis (%s): %d decisions", batches.key, len(shared.table()))
    batches.carry(events.batches)
    return shared


def _attach_consent(app, book):
    """``/recommend`` and ``/events`` ask the book; ``POST /consent`` changes it."""
    from recsys.serving.consent import attach_consent

    return attach_consent(app, book)


def _auth(cfg: DictConfig):
    """Tokens and rate limits of ``auth``; serving open beyond this machine must be asked for."""
    from recsys.serving.auth import AuthConfig, check_exposure

    settings = _section(cfg, "auth") if cfg.get("auth") else {}
    config = AuthConfig.from_settings(**settings)
    check_exposure(str(cfg.host), config, settings.get("enabled", "auto"))
    names = ", ".join(f"{t.name} ({'+'.join(sorted(t.scopes))})" for t in config.tokens)
    log.info("auth %s%s", "on: " if config.enabled else "off", names if config.enabled else "")
    return config


def _live_rooms(cfg: DictConfig, app):
    """``/live``: the live-room dashboard beside the service (``recsys.liveroom.http``)."""
    live = cfg.get("live_rooms")
    if not live or not live.enabled:
        return app
    from recsys.liveroom.aggregator import AggregatorConfig
    from recsys.liveroom.http import attach_live_rooms
    from recsys.liveroom.rooms import LiveRooms, LiveRoomsConfig

    windows = AggregatorConfig(
        lateness_s=int(live.lateness_s), expire_after_s=int(live.expire_after_s)
    )
    store = LiveRooms(LiveRoomsConfig(aggregator=windows))
    coupons = getattr(app.state, "coupons", None)
    if coupons is not None:
        store.offer = coupons.room_offer  # spikes get the coupon model's word on an offer
    return attach_live_rooms(app, _shared_rooms(cfg, store))


def _shared_rooms(cfg: DictConfig, store):
    """With state in Redis, every worker folds the same ordered batches of live events."""
    if cfg.state.backend != "redis":
        return store
    # Only a Redis-backed service needs the client library.
    from recsys.liveroom.shared import SharedLiveRooms
    from recsys.serving.redis_log import RedisBatches

    batches = RedisBatches(url=cfg.state.redis_url, key=str(cfg.live_rooms.key))
    if cfg.state.fresh:
        batches.reset()
    return SharedLiveRooms(store, batches)


def _coupons(cfg: DictConfig, app, book):
    """``GET /coupon``: the hesitation trigger of a recsys-coupons run beside the service."""
    from recsys.coupons.service import attach_coupons, load_trigger

    if int(cfg.workers) > 1:
        raise ValueError("serve: coupons.model keeps hesitations in one process: workers=1")
    c = cfg.coupons
    trigger = load_trigger(c.model, _tables(cfg.world), tier=str(c.tier), budget=float(c.budget),
                           wait_s=int(c.wait_s), roi_floor=float(c.roi_floor))  # fmt: skip
    trigger.consent = book
    return attach_coupons(app, trigger)


def _check_state(cfg: DictConfig) -> None:
    """Refuse, before loading anything, workers that could not share state."""
    backend, workers = cfg.state.backend, int(cfg.workers)
    if backend not in ("memory", "redis"):
        raise ValueError(f"serve: state.backend={backend!r}: expected memory or redis")
    if workers < 1 or (backend == "memory" and workers > 1):
        raise ValueError(
            f"serve: workers={workers} need state shared between them (sessions, live rooms, "
            "consent decisions): state.backend=redis"
        )


def _shared_state(cfg: DictConfig, service):
    """The service whose live state several workers share (``state.backend=redis``)."""
    if cfg.state.backend == "memory":
        return service
    # Only a Redis-backed service needs the client library.
    from recsys.serving.redis_log import RedisEventLog
    from recsys.serving.state import SharedStateService

    events = RedisEventLog(url=cfg.state.redis_url, key=cfg.state.key)
    if cfg.state.fresh:
        events.reset()
    return SharedStateService(service, events)


def _popularity(cfg: DictConfig, session, window):
    from recsys.data.validation.online import OnlineEventChecker
    from recsys.serving import PopularityLiveService

    for name in ("index", "ranker_checkpoint"):
        if cfg.get(name):
            raise ValueError(f"serve: {name}={cfg[name]!r} needs checkpoint=<a trained run>")
    tables = _tables(cfg.world)
    clock, start = _clock(cfg.clock, tables)
    service = PopularityLiveService.from_tables(
        tables,
        until=start,
        session_config=session,
        popularity_half_life_s=float(cfg.popularity_half_life_s),
    )
    return service, clock, start, OnlineEventChecker.from_tables(tables, window=window)


def _trained(cfg: DictConfig, session, window):
    """The trained pipeline of ``cfg.checkpoint``; its world replaces ``cfg.world``."""
    from recsys.data.validation.online import OnlineEventChecker
    from recsys.serving.loading import load_trained_service
    from recsys.serving.trained import FlowConfig

    picked = {}

    def start_at(tables) -> int:
        picked["clock"], picked["start"] = _clock(cfg.clock, tables)
        picked["checker"] = OnlineEventChecker.from_tables(tables, window=window)
        return picked["start"]

    service = load_trained_service(
        cfg.checkpoint,
        until=start_at,
        index_dir=cfg.index,
        ranker=cfg.ranker_checkpoint,
        session_config=session,
        flow=FlowConfig(n_candidates=int(cfg.n_candidates), strategy=cfg.strategy),
        popularity_half_life_s=float(cfg.popularity_half_life_s),
        device=cfg.device,
        cache_dir=cfg.world.cache_dir,
    )
    return service, picked["clock"], picked["start"], picked["checker"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    from recsys.serving.workers import serve

    app = build_app(cfg)
    serve(app, host=cfg.host, port=int(cfg.port), workers=int(cfg.workers), log_level=cfg.log_level)


if __name__ == "__main__":
    main()
