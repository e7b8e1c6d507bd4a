"""`recsys-forget`: remove users from every artifact under some folders (recsys/conf/forget.yaml).

The users come from a file (one id per line, or a CSV / Parquet ``user_id`` column); with
``pseudonymise=true`` they are the platform's raw ids, turned into the pseudonyms the tables
hold with the same key ``recsys-ingest`` used. A run killed midway is finished by running the
same command again (``recsys.erasure.forget``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def user_column(path: str | Path):
    """The ids of a users file as written: its ``user_id`` column (Parquet, CSV as text), else
    one per non-blank line."""
    import pandas as pd

    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)["user_id"]
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"user_id": str})["user_id"]
    lines = [s.strip() for s in path.read_text().splitlines()]
    return pd.Series([s for s in lines if s], dtype=object)


def read_users(path: str | Path, *, pseudonymise: bool = False, key: str | None = None):
    """The ids of a users file as int64 (pseudonymised first when asked)."""
    import numpy as np
    import pandas as pd

    column = user_column(path)
    if pseudonymise:
        from recsys.data.ingest.pseudonyms import Pseudonymiser

        column = Pseudonymiser(key)(column)
    ids = pd.to_numeric(column, errors="coerce")
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise ValueError(f"forget: {path}, row {row}: user id {column.iloc[row]!r} is not an "
                         f"integer (raw ids need pseudonymise=true)")  # fmt: skip
    return ids.to_numpy(np.int64)


def run(cfg: DictConfig | Mapping):
    """Forget as configured; returns the ``ForgetReport`` (also written as forget.json)."""
    from recsys.erasure.forget import ForgetRequest, forget

    if not cfg["users"] or not cfg["roots"]:
        raise ValueError("forget: users=<file> and roots=[<folder>, ...] are required")
    users = read_users(cfg["users"], pseudonymise=bool(cfg["pseudonymise"]), key=cfg["key"])
    ts = int(cfg["ts"]) if cfg["ts"] is not None else int(time.time())
    request = ForgetRequest(tuple(users.tolist()), tuple(str(r) for r in cfg["roots"]), ts,
                            progress=bool(cfg["progress"]))  # fmt: skip
    report = forget(request)
    out = Path(cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    body = {"users": report.users, "steps": report.steps, "resumed": report.resumed,
            "seconds": report.seconds, "files_changed": report.files_changed,
            "removed": report.removed, "roots": list(request.roots)}  # fmt: skip
    (out / "forget.json").write_text(json.dumps(body, indent=2) + "\n")
    print(report.summary())
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="forget")
def main(cfg: DictConfig) -> None:
    log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    run(cfg)


if __name__ == "__main__":
    main()
