"""Candidate retrieval: nearest-neighbour search over tower outputs, restricted to what is live.

``CandidateIndex`` wraps a FAISS index (inner product) under raw ids and saves beside a
checkpoint; ``LiveSchedule`` and ``LiveRetriever`` restrict search to the rooms or products
available at query time.
"""

from recsys.retrieval._faiss import set_threads
from recsys.retrieval.index import PAD_ID, CandidateIndex, IndexConfig
from recsys.retrieval.live import STRATEGIES, LiveRetriever, LiveSchedule, Strategy

__all__ = [
    "PAD_ID",
    "STRATEGIES",
    "CandidateIndex",
    "IndexConfig",
    "LiveRetriever",
    "LiveSchedule",
    "Strategy",
    "set_threads",
]
