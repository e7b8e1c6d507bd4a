"""Learned segments beside the rule tags: seeded k-means on standardised profile vectors.

Segments find groups nobody wrote a rule for. Each is described by its most distinctive
features, the centroid coordinates furthest from the population mean in standard deviations
(``"interest_beauty +2.1 sd, price_sensitivity +0.9 sd"``), so a marketer can name it. A
user's segment confidence is the margin between the nearest and second-nearest centroid,
``1 - d1 / d2``: 0 on a border, near 1 deep inside a segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.cluster.vq import kmeans2

from recsys.profiling.tags import typed_tags


@dataclass(frozen=True)
class Segments:
    centroids: np.ndarray  # (K, F) in standardised units
    mean: np.ndarray  # (F,) feature means the standardisation used
    scale: np.ndarray  # (F,) feature standard deviations (1 where constant)
    feature_names: tuple[str, ...]
    sizes: np.ndarray  # (K,) users per segment in the fitted data
    seed: int

    @property
    def k(self) -> int:
        return len(self.centroids)

    def standardise(self, matrix: np.ndarray) -> np.ndarray:
        if matrix.shape[1] != len(self.feature_names):
            raise ValueError(
                f"profile matrix has {matrix.shape[1]} features, segments expect "
                f"{len(self.feature_names)}"
            )
        return (np.asarray(matrix, dtype=np.float64) - self.mean) / self.scale

    def assign(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment (U,) int64, confidence (U,) = 1 - nearest / second-nearest distance)."""
        z = self.standardise(matrix)
        d2 = (z**2).sum(axis=1)[:, None] - 2.0 * z @ self.centroids.T
        d2 += (self.centroids**2).sum(axis=1)[None, :]  # (U, K) squared distances
        dist = np.sqrt(np.maximum(d2, 0.0))
        order = np.argsort(dist, axis=1)
        label = order[:, 0]
        rows = np.arange(len(z))
        if self.k < 2:
            return label, np.ones(len(z))
        nearest, second = dist[rows, order[:, 0]], dist[rows, order[:, 1]]
        margin = 1.0 - np.divide(nearest, second, out=np.zeros(len(z)), where=second > 0)
        return label, margin

    def describe(self, top: int = 3) -> list[str]:
        """Per segment its ``top`` most distinctive features with signed distance in sd."""
        out = []
        for c in self.centroids:
            idx = np.argsort(-np.abs(c), kind="stable")[:top]
            out.append(", ".join(f"{self.feature_names[i]} {c[i]:+.1f} sd" for i in idx))
        return out


def fit_segments(
    matrix: np.ndarray,
    feature_names: list[str] | tuple[str, ...],
    k: int = 8,
    seed: int = 0,
    iterations: int = 30,
) -> Segments:
    """k-means (scipy ``kmeans2``, k-means++ start) on the standardised rows of ``matrix``."""
    x = np.asarray(matrix, dtype=np.float64)
    if len(x) < k:
        raise ValueError(f"cannot fit {k} segments to {len(x)} users")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - mean) / scale
    centroids, labels = kmeans2(z, k, iter=iterations, minit="++", rng=np.random.default_rng(seed))
    sizes = np.bincount(labels, minlength=k)
    return Segments(centroids, mean, scale, tuple(feature_names), sizes, seed)


def segment_tags(user_ids: np.ndarray, matrix: np.ndarray, segments: Segments) -> pd.DataFrame:
    """Segment membership as rows of the tag table (tag id ``segment:<k>``)."""
    label, margin = segments.assign(matrix)
    descriptions = np.asarray(segments.describe(), dtype=object)
    seg = label.astype(str).astype(object)
    frame = pd.DataFrame(
        {
            "user_id": np.asarray(user_ids, dtype=np.int64),
            "tag_id": "segment:" + seg,
            "rule_id": "segment:*",
            "name_zh": "人群分群" + seg,
            "name_en": "segment " + seg,
            "confidence": margin,
            "entity": seg,
            "provenance": "k-means segment "
            + seg
            + f" of {segments.k} (seed {segments.seed}): "
            + descriptions[label]
            + "; confidence = 1 - nearest / second-nearest centroid distance",
        }
    )
    return typed_tags(frame)
