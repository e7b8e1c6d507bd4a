"""Validation shared by the trained recommenders: early-stopping metrics and post-hoc scales.

A trained recommender with several heads (next product, next live room) validates each head on
its own split through a per-head view (``for_head``), and reports the heads' mean as the value
early stopping watches. Scales chosen after training (the repeat bonus's weight) are picked
per head by the same validation metric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recsys.core import Recommender
from recsys.data.interactions import Split
from recsys.evaluation import evaluate


@dataclass(frozen=True)
class Validation:
    """The split (per head) and protocol that early stopping validates on."""

    splits: Mapping[str, Split]  # head -> split whose ``train`` is the fit's training data
    protocol: str = "full"
    max_users: int | None = 10_000
    seed: int = 0


def validate_head(view: Recommender, split: Split, v: Validation) -> dict[str, float]:
    """Validation metrics at 10 of one head's view; sampled metrics lose their prefix."""
    res = evaluate(
        view, split, protocol=v.protocol, stage="valid", ks=(10,), max_users=v.max_users,
        seed=v.seed,
    )  # fmt: skip
    return {k.removeprefix("sampled_"): float(x) for k, x in res.metrics.items()}


def validation_metrics(for_head: Callable[[str], Recommender], v: Validation) -> dict[str, float]:
    """``<head>/{hr@10,ndcg@10,mrr}`` per head and the heads' mean ``hr@10`` / ``ndcg@10``."""
    metrics: dict[str, float] = {}
    for head, split in v.splits.items():
        res = validate_head(for_head(head), split, v)
        metrics.update({f"{head}/{k}": res[k] for k in ("hr@10", "ndcg@10", "mrr")})
    for name in ("hr@10", "ndcg@10"):
        metrics[name] = float(np.mean([metrics[f"{h}/{name}"] for h in v.splits]))
    return metrics


def calibrate_scales(
    scale_of: Callable[[str], torch.Tensor],
    scales: Sequence[float],
    for_head: Callable[[str], Recommender],
    v: Validation,
) -> dict[str, float]:
    """Per validated head, the value of ``scales`` whose validation NDCG@10 is best (the first
    on ties); it is left in the head's scale buffer ``scale_of(head)``."""
    chosen = {}
    for head, split in v.splits.items():
        best = None
        for scale in scales:
            scale_of(head).fill_(scale)
            value = validate_head(for_head(head), split, v)["ndcg@10"]
            if best is None or value > best[1]:
                best = (scale, value)
        scale_of(head).fill_(best[0])
        chosen[head] = best[0]
    return chosen
