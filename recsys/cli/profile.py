"""`recsys-profile`: profiles and tags of every viewer of a world (recsys/conf/profile.yaml).

Any world the data configs name: ``data=world data.path=DIR`` (a platform's own logs from
``recsys-ingest``) or ``data=synthetic-<preset>``. Statistics are built one event part file at
a time and merged (``recsys.profiling``: an incremental update equals a full build), so memory
follows the largest part. Accuracy against planted truth needs a simulated world's ``truth/``;
without it the summary says it was skipped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def world_of(data: Mapping) -> Path:
    from recsys.recommenders.data import DataConfig, world_folder_of

    config = DataConfig(**data)
    folder = world_folder_of(config)
    if folder is None:
        raise ValueError(
            f"profile: data {config.name!r} is not a live-commerce world; profiles "
            "read viewers' events (data=world data.path=DIR or synthetic-<preset>)"
        )
    return folder


def build(folder: Path, segments: int):
    """(ProfileResult, events read), statistics merged over the event part files."""
    import pandas as pd

    from recsys.privacy.consent import ConsentBook
    from recsys.profiling import Catalog, Profiler, merge_all

    catalog = Catalog.from_tables(pd.read_parquet(folder / "products.parquet"),
                                  pd.read_parquet(folder / "streamers.parquet"))  # fmt: skip
    profiler = Profiler(catalog=catalog, n_segments=segments, consent=ConsentBook.read(folder))
    parts = sorted((folder / "events").glob("part-*.parquet"))
    batches, n_events = [], 0
    for part in parts:
        events = pd.read_parquet(part)
        batches.append(profiler.stats(events))
        n_events += len(events)
    if not batches:
        raise ValueError(f"profile: {folder}/events holds no part files")
    return profiler.derive(merge_all(batches)), n_events


def export(folder: Path, tags, settings: Mapping, out: Path) -> dict:
    """Cohorts and segments as k-anonymous groups (``recsys.privacy.kanon``): the only way they
    leave; ``cohorts.parquet`` and its report in ``out``."""
    import pandas as pd

    from recsys.privacy.kanon import export_cohorts, quasi_identifiers

    if isinstance(settings, DictConfig):
        settings = OmegaConf.to_container(settings, resolve=True)
    qis = quasi_identifiers(settings["quasi_identifiers"])
    users = pd.read_parquet(folder / "users.parquet")
    k, most = int(settings["k"]), float(settings["max_suppressed"])
    table, report, absent = export_cohorts(tags, users, qis, k=k, max_suppressed=most)
    if absent:
        log.warning("export: %s/users.parquet has no %s; grouped without them", folder, absent)
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "cohorts.parquet", index=False)
    log.info("export: %s", report.summary())
    facts = {**dataclasses.asdict(report), "absent_quasi_identifiers": absent}
    (out / "report.json").write_text(json.dumps(facts, indent=2, ensure_ascii=False) + "\n")
    return {"path": str(out / "cohorts.parquet"), **facts}


def run(cfg: DictConfig | Mapping) -> dict:
    """Build, save and summarise the profiles; returns the summary written to profile.json."""
    from recsys.profiling import ProfileStore
    from recsys.profiling.accuracy import truth_accuracy

    data = OmegaConf.to_container(cfg["data"], resolve=True) if isinstance(
        cfg["data"], DictConfig) else dict(cfg["data"])  # fmt: skip
    folder, out = world_of(data), Path(cfg["out_dir"])
    result, n_events = build(folder, int(cfg["segments"]))
    ProfileStore(out / "profiles").save(result)
    counts = result.tags["tag_id"].value_counts().head(int(cfg["top_tags"]))
    summary = {"world": str(folder), "events": n_events,
               "profiled_users": int(len(result.profiles.users)),
               "tag_rows": int(len(result.tags)), "top_tags": counts.to_dict()}  # fmt: skip
    settings = cfg.get("export") or {}
    if int(settings.get("k", 0)) > 0:
        summary["export"] = export(folder, result.tags, settings, out / "export")
    if (folder / "truth" / "users.parquet").is_file():
        summary["accuracy"] = truth_accuracy(result, folder)
    else:
        summary["accuracy"] = f"skipped: {folder} has no planted truth (truth/)"
        log.warning("accuracy against planted truth %s", summary["accuracy"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="profile")
def main(cfg: DictConfig) -> None:
    summary = run(cfg)
    print(f"{summary['profiled_users']} viewers profiled from {summary['events']} events; "
          f"profiles in {Path(cfg.out_dir) / 'profiles'}")  # fmt: skip
    for tag, n in summary["top_tags"].items():
        print(f"  {tag}: {n}")
    accuracy = summary["accuracy"]
    print(accuracy if isinstance(accuracy, str) else json.dumps(accuracy, indent=2))


if __name__ == "__main__":
    main()
