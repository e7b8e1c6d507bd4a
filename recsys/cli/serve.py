"""`recsys-serve`: run the recommendation service over a live-commerce world (Hydra app).

Until a trained pipeline is wired in, the service runs ``PopularityLiveService``: what is live
at the clock's time, by recent popularity, boosted by each viewer's session.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _tables(world: DictConfig):
    from recsys.data.datasets import ensure_world
    from recsys.data.tables import load_tables

    if world.data_dir:
        return load_tables(Path(world.data_dir))
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


def build_app(cfg: DictConfig):
    """The FastAPI app the config describes (without starting a server)."""
    from recsys.ranking.session import SessionConfig
    from recsys.serving import PopularityLiveService, create_app

    for name in ("checkpoint", "index"):
        if cfg.get(name):
            raise ValueError(
                f"serve: {name}={cfg[name]!r}: loading a trained pipeline is not wired yet; "
                f"leave {name} null to serve the popularity-live recommender"
            )
    tables = _tables(cfg.world)
    clock, start = _clock(cfg.clock, tables)
    session = SessionConfig(**OmegaConf.to_container(cfg.session, resolve=True))
    service = PopularityLiveService.from_tables(
        tables,
        until=start,
        session_config=session,
        popularity_half_life_s=float(cfg.popularity_half_life_s),
    )
    log.info("serving from %s; %s", start, service.health(start))
    return create_app(service, clock=clock)


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    import uvicorn

    uvicorn.run(build_app(cfg), host=cfg.host, port=int(cfg.port), log_level=cfg.log_level)


if __name__ == "__main__":
    main()
