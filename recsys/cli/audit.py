"""`recsys-audit`: search an output tree for forgotten users, raw ids and PII
(recsys/conf/audit.yaml).

Prints the report (every file and place a hit was found), writes ``audit.json`` and exits
non-zero when anything was found, so a job can fail on it. With ``membership.checkpoint`` and
``membership.probe`` it also measures the membership-inference advantage on the forgotten users
(``recsys.erasure.membership``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from recsys.cli.forget import read_users, user_column

log = logging.getLogger(__name__)


def _membership(m: Mapping, roots: list[str]) -> dict | None:
    if not m.get("checkpoint"):
        return None
    import numpy as np
    import pandas as pd

    from recsys.erasure.membership import membership
    from recsys.privacy.tombstones import Tombstones

    if not m.get("probe"):
        raise ValueError("audit: membership.checkpoint needs membership.probe (Parquet)")
    probe = pd.read_parquet(m["probe"])
    members = (read_users(m["members"]) if m.get("members") else
               np.concatenate([Tombstones.read(r).ids for r in roots]))  # fmt: skip
    others = np.setdiff1d(probe["user_id"].unique(), members)
    rng = np.random.default_rng(int(m.get("seed", 0)))
    nonmembers = rng.choice(others, size=min(int(m["nonmembers"]), len(others)), replace=False)
    return asdict(membership(m["checkpoint"], probe, members, nonmembers,
                             cache_dir=m.get("cache_dir")))  # fmt: skip


def read_raw_ids(path: str | Path) -> list[str]:
    """The platform's ids as written in a users file, whole numbers or not."""
    text = user_column(path).dropna().astype(str).str.strip()
    return text[text != ""].tolist()


def run(cfg: DictConfig | Mapping) -> dict:
    """The audit as configured; returns what audit.json holds (``found``: occurrences)."""
    import numpy as np
    from tqdm import tqdm

    from recsys.erasure.audit import audit

    roots = [str(r) for r in cfg["roots"]]
    if not roots:
        raise ValueError("audit: roots=[<folder>, ...] is required")
    ids = read_users(cfg["ids"]) if cfg.get("ids") else np.zeros(0, np.int64)
    raw = read_raw_ids(cfg["raw_ids"]) if cfg.get("raw_ids") else []
    report = audit(roots, ids=ids, raw_ids=raw, pii=bool(cfg["pii"]),
                   progress=lambda files: tqdm(files, desc="audit"))  # fmt: skip
    print(report.summary())
    body = {"roots": roots, "files": report.files, "found": dict(report.occurrences),
            "hits": [asdict(h) for h in report.hits],
            "membership": _membership(cfg.get("membership") or {}, roots)}  # fmt: skip
    if body["membership"]:
        print(f"membership inference on forgotten users: {body['membership']}")
    out = Path(cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(body, indent=2, default=str) + "\n")
    return body


@hydra.main(version_base="1.3", config_path="../conf", config_name="audit")
def main(cfg: DictConfig) -> None:
    log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    if sum(run(cfg)["found"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
