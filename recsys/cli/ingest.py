"""`recsys-ingest`: a platform's raw tables -> a world folder (recsys/conf/ingest.yaml).

The mapping from raw columns and event names to the schema lives in the ``tables`` config
group (``recsys/conf/tables/``; a team's own in ``--config-dir``), so no code changes per
platform. The folder written is read by every command as ``data=world data.path=<out_dir>``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def settings_from(cfg: Mapping):
    from recsys.data.ingest import IngestSettings, source_from_dict
    from recsys.privacy.pii import scrub
    from recsys.privacy.tombstones import Tombstones

    tables = OmegaConf.to_container(cfg["tables"], resolve=True) if isinstance(
        cfg["tables"], DictConfig) else dict(cfg["tables"])  # fmt: skip
    return IngestSettings(
        source=str(cfg["source"]),
        out_dir=str(cfg["out_dir"]),
        tables={name: source_from_dict(name, spec) for name, spec in tables.items()},
        format=str(cfg["format"]),
        mode=str(cfg["mode"]),
        chunk_rows=int(cfg["chunk_rows"]),
        pseudonymise=bool(cfg["pseudonymise"]),
        key=cfg["key"],
        delimiter=str(cfg["delimiter"]),
        progress=bool(cfg["progress"]),
        forgotten=tuple(Tombstones.read(cfg["out_dir"]).ids.tolist()),
        text_filter=scrub if cfg.get("scrub_pii", True) else None,
    )


def run(cfg: DictConfig | Mapping):
    """Ingest as configured; returns the ``IngestReport`` (also logged). With ``new_key``,
    re-key ``out_dir``'s pseudonyms from ``key`` to it instead, reading the raw user ids from
    ``source`` (``recsys.privacy.keys``); returns the ``RotationReport``."""
    from recsys.data.ingest import ingest_files

    if cfg.get("new_key"):
        from recsys.privacy.keys import rotate_key

        return rotate_key(settings_from(cfg), str(cfg["new_key"]))

    report = ingest_files(settings_from(cfg))
    total = sum(c.input for c in report.counts.values())
    log.info("ingest: %d rows read, %d rejected -> %s", total, report.n_rejected, report.out_dir)
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="ingest")
def main(cfg: DictConfig) -> None:
    print(run(cfg).summary())


if __name__ == "__main__":
    main()
