"""The ranker: candidates of each request -> top-k with scores and reason codes.

Request flow: viewer + time -> retrieve what is live now -> candidate features
(``recsys.ranking.candidate_features``) -> ``Ranker.rank`` -> top-k with reasons. Two modes:

* ``blend``: a transparent weighted sum of named features, weights in
  ``conf/ranker/blend.yaml`` (``BlendWeights``); the score is exactly that sum;
* ``learned``: an ESMM model (``recsys.models.esmm``) trained on impression logs; items are
  sorted by the configured objective: ``ctcvr`` (pCTR x pCVR, the chance an impression turns
  into a purchase), ``ctr`` (pCTR) or ``gmv`` (pCTCVR x price, expected sales per impression).

Either way every returned item carries reason codes (``recsys.ranking.reasons``) from its
features, so a UI can say why it is there. Ties keep the lower product id first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import yaml

from recsys.ranking.candidate_features import FeatureMatrix
from recsys.ranking.reasons import ReasonRules

if TYPE_CHECKING:  # the blend ranker runs without torch
    from recsys.models.esmm import ESMM

BLEND_YAML = Path(__file__).resolve().parent.parent / "conf" / "ranker" / "blend.yaml"
OBJECTIVES = ("ctcvr", "ctr", "gmv")
CANDIDATE_COLUMNS = ("request_id", "product_id", "streamer_id", "session_id")


@dataclass(frozen=True)
class BlendWeights:
    weights: tuple[tuple[str, float], ...]  # (feature name, weight)

    @classmethod
    def from_yaml(cls, path: str | Path = BLEND_YAML) -> BlendWeights:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        weights = raw.get("weights")
        if not isinstance(weights, dict) or not weights:
            raise ValueError(f"{path}: needs a non-empty 'weights' mapping")
        return cls(tuple((str(k), float(v)) for k, v in weights.items()))

    def score(self, features: FeatureMatrix) -> np.ndarray:
        unknown = [name for name, _ in self.weights if name not in features.names]
        if unknown:
            raise ValueError(f"blend weights name unknown features {unknown}")
        names = [name for name, _ in self.weights]
        w = np.array([v for _, v in self.weights], dtype=np.float64)
        return features.select(names).values.astype(np.float64) @ w


class Ranker:
    """Scores candidate rows and keeps the top ``k`` of each request, with reasons."""

    def __init__(
        self,
        *,
        mode: Literal["blend", "learned"],
        blend: BlendWeights | None = None,
        model: ESMM | None = None,
        model_features: tuple[str, ...] = (),
        objective: str = "ctcvr",
        reasons: ReasonRules | None = None,
        k: int = 10,
    ) -> None:
        if mode not in ("blend", "learned"):
            raise ValueError(f"Ranker: mode must be 'blend' or 'learned', got {mode!r}")
        if mode == "blend" and blend is None:
            raise ValueError("Ranker: blend mode needs BlendWeights")
        if mode == "learned" and (model is None or not model_features):
            raise ValueError("Ranker: learned mode needs a model and the features it reads")
        if objective not in OBJECTIVES:
            raise ValueError(f"Ranker: objective must be one of {OBJECTIVES}, got {objective!r}")
        if k < 1:
            raise ValueError(f"Ranker: k must be >= 1, got {k}")
        self.mode, self.blend, self.model = mode, blend, model
        self.model_features, self.objective = tuple(model_features), objective
        self.reasons = reasons if reasons is not None else ReasonRules.from_yaml()
        self.k = k

    @classmethod
    def blended(cls, weights: BlendWeights | None = None, **kwargs) -> Ranker:
        return cls(mode="blend", blend=weights or BlendWeights.from_yaml(), **kwargs)

    @classmethod
    def learned(cls, model: ESMM, model_features, **kwargs) -> Ranker:
        return cls(mode="learned", model=model, model_features=tuple(model_features), **kwargs)

    def score(self, features: FeatureMatrix) -> dict[str, np.ndarray]:
        """``score`` per row (plus ``pctr``, ``pcvr``, ``pctcvr`` in learned mode)."""
        if self.mode == "blend":
            return {"score": self.blend.score(features)}
        p = self.model.predict(features.select(self.model_features).values)
        if self.objective == "ctr":
            p["score"] = p["pctr"]
        elif self.objective == "ctcvr":
            p["score"] = p["pctcvr"]
        else:
            p["score"] = p["pctcvr"] * np.exp(features.column("log_price").astype(np.float64))
        return p

    def rank(
        self,
        requests: pd.DataFrame,
        candidates: pd.DataFrame,
        features: FeatureMatrix,
        k: int | None = None,
    ) -> pd.DataFrame:
        """Top ``k`` candidates per request, best first.

        ``candidates`` (``CANDIDATE_COLUMNS``) and ``features`` describe the same rows in the
        same order; ``requests`` has ``request_id``, ``user_id``, ``ts``. Returns one row per
        kept item: request_id, user_id, ts, position (0-based), the candidate ids, score (and
        the learned probabilities), reasons (tuple of codes).
        """
        k = self.k if k is None else k
        missing = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns]
        if missing:
            raise ValueError(f"rank: candidates lack columns {missing}")
        if len(candidates) != len(features):
            raise ValueError(f"rank: {len(candidates)} candidates but {len(features)} feature rows")
        index = pd.Index(requests["request_id"].to_numpy(np.int64))
        group = index.get_indexer(candidates["request_id"].to_numpy(np.int64))
        if np.any(group < 0):
            row = int(np.flatnonzero(group < 0)[0])
            raise ValueError(f"rank: candidate row {row} names a request not in requests")
        scores = self.score(features)
        product = candidates["product_id"].to_numpy(np.int64)
        order = np.lexsort((product, -scores["score"], group))
        first = np.maximum.accumulate(
            np.where(np.r_[True, group[order][1:] != group[order][:-1]], np.arange(len(order)), 0)
        )
        position = np.arange(len(order)) - first
        keep = order[position < k]
        return self._frame(
            requests, candidates, features, scores, group, keep, position[position < k]
        )

    def _frame(self, requests, candidates, features, scores, group, keep, position) -> pd.DataFrame:
        out = pd.DataFrame(
            {
                "request_id": candidates["request_id"].to_numpy(np.int64)[keep],
                "user_id": requests["user_id"].to_numpy(np.int64)[group[keep]],
                "ts": requests["ts"].to_numpy(np.int64)[group[keep]],
                "position": position.astype(np.int64),
            }
        )
        for name in CANDIDATE_COLUMNS[1:]:
            out[name] = candidates[name].to_numpy(np.int64)[keep]
        for name, values in scores.items():
            out[name] = values[keep]
        out["reasons"] = self.reasons.codes(features.take(keep))
        return out


def retrieve_live(
    requests: pd.DataFrame,
    live: pd.DataFrame,
    scores: pd.DataFrame | None = None,
    top_n: int | None = None,
) -> pd.DataFrame:
    """The retrieval stage of the request flow: each request's live candidates (``live``, e.g.
    ``recsys.simulation.impressions.live_candidates``), joined with upstream
    ``retrieval_score`` / ``sequential_score`` columns from ``scores`` (keyed by request_id and
    product_id; missing pairs get NaN) and, with ``top_n``, cut to the best ``top_n`` by
    retrieval score per request (unscored pairs last). Adds the requests' user_id and ts."""
    out = live.merge(requests[["request_id", "user_id", "ts"]], on="request_id", how="inner")
    if scores is not None:
        keep = [c for c in ("retrieval_score", "sequential_score") if c in scores.columns]
        out = out.merge(scores[["request_id", "product_id", *keep]],
                        on=["request_id", "product_id"], how="left")  # fmt: skip
    if top_n is not None:
        score = out["retrieval_score"] if "retrieval_score" in out.columns else None
        if score is None:
            raise ValueError("retrieve_live: top_n needs a retrieval_score column in scores")
        order = np.lexsort(
            (out["product_id"], -score.fillna(-np.inf).to_numpy(), out["request_id"])
        )
        out = out.iloc[order]
        out = out.loc[out.groupby("request_id", sort=False).cumcount().to_numpy() < top_n]
    return out.sort_values(["request_id", "product_id"], kind="stable", ignore_index=True)


def rank_live(
    requests: pd.DataFrame,
    live: pd.DataFrame,
    featurizer,
    ranker: Ranker,
    scores: pd.DataFrame | None = None,
    top_n: int | None = None,
) -> pd.DataFrame:
    """Viewer + time -> live candidates (retrieved) -> features -> top-k with reasons.

    ``featurizer`` is a ``CandidateFeaturizer`` over the same world; see ``retrieve_live``.
    """
    candidates = retrieve_live(requests, live, scores, top_n)
    return ranker.rank(requests, candidates, featurizer.transform(candidates))
