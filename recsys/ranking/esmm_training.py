"""Training the ESMM ranker on impression logs with the shared ``Trainer``.

``ImpressionDataset`` holds feature rows with their click and conversion labels and serves
seeded, resumable epochs of ``ImpressionBatch`` (the order is a pure function of (seed,
epoch), as the Trainer's exact-resume contract asks). ``fit_esmm`` trains, validating on
held-out impressions by ROC AUC of click (pCTR), of click-and-convert over all impressions
(pCTCVR) and of conversion among clicks (pCVR), and keeps the best weights by ``monitor``.
Settings come from ``conf/ranker/esmm.yaml`` (``esmm_settings``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.stats import rankdata

from recsys.models.esmm import ESMM, ESMMConfig
from recsys.tasks.esmm import ESMMTask
from recsys.training.trainer import FitResult, Trainer, TrainerConfig

ESMM_YAML = Path(__file__).resolve().parent.parent / "conf" / "ranker" / "esmm.yaml"


@dataclass
class ImpressionBatch:
    features: torch.Tensor  # (B, F) float32
    click: torch.Tensor  # (B,) float32 0/1
    conversion: torch.Tensor  # (B,) float32 0/1
    ids: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (B,) int64

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ImpressionBatch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        ids = {k: move(v) for k, v in self.ids.items()}
        return ImpressionBatch(move(self.features), move(self.click), move(self.conversion), ids)


class ImpressionDataset:
    """Impressions as tensors: features (N, F), click and conversion labels, optional ids."""

    def __init__(
        self,
        features: np.ndarray,
        click: np.ndarray,
        conversion: np.ndarray,
        ids: dict[str, np.ndarray] | None = None,
    ) -> None:
        n = len(features)
        if len(click) != n or len(conversion) != n:
            raise ValueError(f"ImpressionDataset: {n} feature rows, {len(click)} clicks, "
                             f"{len(conversion)} conversions")  # fmt: skip
        if np.any(np.asarray(conversion) > np.asarray(click)):
            row = int(np.flatnonzero(np.asarray(conversion) > np.asarray(click))[0])
            raise ValueError(f"ImpressionDataset row {row}: a conversion without a click")
        self.features = torch.as_tensor(np.asarray(features, dtype=np.float32))
        self.click = torch.as_tensor(np.asarray(click, dtype=np.float32))
        self.conversion = torch.as_tensor(np.asarray(conversion, dtype=np.float32))
        self.ids = {
            k: torch.as_tensor(np.asarray(v, dtype=np.int64)) for k, v in (ids or {}).items()
        }

    def __len__(self) -> int:
        return len(self.features)

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def batch(self, rows: torch.Tensor) -> ImpressionBatch:
        ids = {k: v[rows] for k, v in self.ids.items()}
        return ImpressionBatch(self.features[rows], self.click[rows], self.conversion[rows], ids)

    def epoch(
        self, *, batch_size: int, seed: int, epoch: int, start_step: int = 0, bucket_pool: int = 0
    ) -> Iterator[ImpressionBatch]:
        """Shuffled batches from ``start_step`` on; ``bucket_pool`` is ignored (fixed width)."""
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(self)))
        for step in range(start_step, self.n_batches(batch_size)):
            yield self.batch(order[step * batch_size : (step + 1) * batch_size])


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when a class is missing."""
    labels = np.asarray(labels) > 0
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def esmm_metrics(model: ESMM, data: ImpressionDataset) -> dict[str, float]:
    """Click AUC (pCTR), CTCVR AUC (pCTCVR vs click-and-convert), CVR AUC (pCVR among clicks)
    and their mean ``esmm_auc`` of the first two."""
    ids = {k: v.numpy() for k, v in data.ids.items()} or None
    p = model.predict(data.features.numpy(), ids)
    click, conv = data.click.numpy(), data.conversion.numpy()
    clicked = click > 0
    out = {
        "click_auc": roc_auc(p["pctr"], click),
        "ctcvr_auc": roc_auc(p["pctcvr"], click * conv),
        "cvr_auc": roc_auc(p["pcvr"][clicked], conv[clicked]),
    }
    out["esmm_auc"] = float(np.nanmean([out["click_auc"], out["ctcvr_auc"]]))
    return out


def esmm_settings(path: str | Path = ESMM_YAML) -> dict:
    """``hidden``, ``dropout``, ``ctcvr_weight``, ``objective`` and a ``TrainerConfig``."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    known = {f.name for f in fields(TrainerConfig)}
    unknown = sorted(set(raw.get("trainer", {})) - known)
    if unknown:
        raise ValueError(f"{path}: unknown trainer settings {unknown}")
    return {
        "hidden": tuple(raw.get("model", {}).get("hidden", (64, 32))),
        "dropout": float(raw.get("model", {}).get("dropout", 0.0)),
        "ctcvr_weight": float(raw.get("task", {}).get("ctcvr_weight", 1.0)),
        "objective": str(raw.get("objective", "ctcvr")),
        "trainer": TrainerConfig(**raw.get("trainer", {})),
    }


def fit_esmm(
    train: ImpressionDataset,
    valid: ImpressionDataset | None = None,
    *,
    hidden: tuple[int, ...] = (64, 32),
    dropout: float = 0.0,
    ctcvr_weight: float = 1.0,
    trainer: TrainerConfig | None = None,
    categorical: tuple[tuple[str, int], ...] = (),
    run_dir: str | Path | None = None,
) -> tuple[ESMM, FitResult]:
    """Train an ESMM on ``train`` (validated on ``valid`` when given); the best weights.

    Initial weights, data order and dropout all follow ``trainer.seed``: same data, same seed,
    same model (on CPU with the same number of threads)."""
    config = trainer or TrainerConfig(monitor="esmm_auc", progress=False)
    n_features = train.features.shape[1]
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, not the process
        torch.manual_seed(config.seed)
        model = ESMM(ESMMConfig(n_features, hidden, dropout, categorical))
    model.set_standardisation(train.features.numpy())
    validate = None if valid is None else (lambda: esmm_metrics(model, valid))
    fit = Trainer(
        config=config,
        model=model,
        task=ESMMTask(ctcvr_weight),
        dataset=train,
        validate=validate,
        run_dir=run_dir,
    ).fit()
    return model, fit
