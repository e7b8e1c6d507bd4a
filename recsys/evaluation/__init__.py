"""Ranking metrics, evaluation protocols and paired significance tests for recommenders."""

from recsys.evaluation.metrics import (
    coverage,
    hit_rate,
    metrics_from_rank,
    mrr,
    ndcg,
    ndcg_multi,
    per_user_metrics,
    recall,
    reciprocal_rank,
    target_rank,
)
from recsys.evaluation.negatives import sample_negatives
from recsys.evaluation.protocols import PROTOCOLS, STAGES, EvalResult, evaluate
from recsys.evaluation.ranking import rank_topk
from recsys.evaluation.significance import PairedResult, paired_test

__all__ = [
    "PROTOCOLS",
    "STAGES",
    "EvalResult",
    "PairedResult",
    "coverage",
    "evaluate",
    "hit_rate",
    "metrics_from_rank",
    "mrr",
    "ndcg",
    "ndcg_multi",
    "paired_test",
    "per_user_metrics",
    "rank_topk",
    "recall",
    "reciprocal_rank",
    "sample_negatives",
    "target_rank",
]
