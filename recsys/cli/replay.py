"""`recsys-replay`: replay a simulated live-room day into a running service (Hydra app).

The day is ``recsys.simulation.live_room.live_room_day`` of the configured world (questions
with planted intents, planted drops, spikes and question bursts), posted to the service's
``POST /live/events`` at ``speed`` x real time; the planted incidents are written beside the
run as ``incidents.csv`` so what the dashboard suggests can be checked against them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def run(
    cfg: DictConfig,
    send: Callable[[list[dict]], dict] | None = None,
    out_dir: str | Path | None = None,
) -> dict:
    """Replay the configured day; ``send`` defaults to posting to ``cfg.url``."""
    from recsys.datasets import ensure_world
    from recsys.liveroom.replay import http_sender, replay, replay_frame
    from recsys.simulation.live_room import LiveRoomPlan, live_room_day

    world = cfg.world
    folder = world.path or ensure_world(world.preset, int(world.seed), world.cache_dir)
    plan = LiveRoomPlan(**OmegaConf.to_container(cfg.plan, resolve=True))
    day = live_room_day(folder, int(cfg.day), plan)
    frame = replay_frame(day)
    if cfg.get("hours"):
        frame = frame[frame["ts"] < frame["ts"].min() + 3600 * float(cfg.hours)]
    log.info(
        "replaying day %d of %s: %d events, %d rooms, %d planted incidents at %gx",
        cfg.day,
        folder,
        len(frame),
        len(day.sessions),
        len(day.incidents),
        cfg.speed,
    )
    result = replay(
        frame,
        send or http_sender(cfg.url, token=cfg.get("token")),
        speed=float(cfg.speed),
        tick_s=float(cfg.tick_s),
        progress=bool(cfg.progress),
    )
    summary = {
        "events": result.events,
        "batches": result.batches,
        "seconds": round(result.seconds, 3),
        **result.totals,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        day.incidents.to_csv(out / "incidents.csv", index=False)
        (out / "replay.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("replay done: %s", summary)
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="replay")
def main(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig

    return run(cfg, out_dir=HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
