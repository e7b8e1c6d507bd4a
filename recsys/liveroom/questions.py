"""Repeated questions in Chinese comments: detect them and cluster them online.

A comment is a question when it ends in a question particle or mark (吗, 嘛, 呢, ?) or holds an
interrogative word (多少, 什么, 怎么, 几, 能不能 ...). Questions are described by character
unigrams and bigrams of their normalised text (NFKC, lower case, punctuation and spaces out),
weighted by inverse document frequency over the questions seen so far, so the frame words every
question shares (能, 吗, 主播) weigh little and the cue words (小个子, 码, 正品) decide.

Clustering is online and shared by all rooms (the same intents recur across rooms): a question
joins the cluster whose centroid is most similar (cosine) if that similarity reaches
``join``, else it starts a cluster; every ``merge_every`` questions clusters whose centroids
reach ``merge`` are merged (union-find, so earlier assignments follow their cluster). A cluster
is named by its most frequent question text. Work per question is bounded by the clusters
sharing one of its features (an inverted index).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass

_PARTICLE_END = re.compile(r"(吗|嘛|么|呢|\?|？)+$")
_INTERROGATIVES = (
    "多少",
    "什么",
    "怎么",
    "几",
    "哪",
    "能不能",
    "是不是",
    "有没有",
    "会不会",
    "还是",
    "可不可以",
    "吗",
    "嘛",
)
_A_NOT_A = re.compile(r"(.)不\1")  # 准不准, 贵不贵: a yes-no question without a particle
_DROP = re.compile(r"[\s\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    return _DROP.sub("", unicodedata.normalize("NFKC", text).lower())


def is_question(text: str) -> bool:
    folded = unicodedata.normalize("NFKC", text).strip()
    if _PARTICLE_END.search(folded) or _A_NOT_A.search(folded):
        return True
    return any(w in folded for w in _INTERROGATIVES)


def features(text: str) -> dict[str, float]:
    """Character unigrams and bigrams of normalised text, each counted once."""
    chars = normalise(text)
    grams = set(chars) | {chars[i : i + 2] for i in range(len(chars) - 1)}
    return {g: 1.0 for g in grams}


@dataclass(frozen=True)
class ClusterConfig:
    join: float = 0.3
    merge: float = 0.25
    merge_every: int = 500
    max_clusters: int = 5000
    names_kept: int = 50  # distinct texts counted per cluster for its name

    def __post_init__(self) -> None:
        if not 0 < self.join <= 1 or not 0 < self.merge <= 1:
            raise ValueError(f"ClusterConfig.join and merge must lie in (0, 1], got {self}")


class _Cluster:
    __slots__ = ("centroid", "size", "texts", "norm2")

    def __init__(self) -> None:
        self.centroid: dict[str, float] = {}
        self.size = 0
        self.texts: Counter[str] = Counter()
        self.norm2 = 0.0


class QuestionClusterer:
    """Online clusters of questions; ``add`` returns the cluster id of a question."""

    def __init__(self, config: ClusterConfig = ClusterConfig()) -> None:
        self.config = config
        self.clusters: dict[int, _Cluster] = {}
        self.parent: dict[int, int] = {}
        self.index: dict[str, set[int]] = defaultdict(set)
        self.df: Counter[str] = Counter()
        self.n = 0
        self.overflow = 0  # questions that could not start a cluster (max_clusters reached)
        self._norms: dict[int, float] = {}  # cached squared norms; dropped as IDF drifts

    def idf(self, gram: str) -> float:
        return math.log((1 + self.n) / (1 + self.df[gram])) + 1.0

    def add(self, text: str) -> int:
        vec = features(text)
        self.n += 1
        self.df.update(vec.keys())
        if self.n % 256 == 0:
            self._norms.clear()
        weights = {g: self.idf(g) ** 2 for g in vec}
        best, score = self._nearest(vec, weights)
        if score < self.config.join and len(self.clusters) < self.config.max_clusters:
            best = len(self.parent)
            self.parent[best] = best
            self.clusters[best] = _Cluster()
        elif best < 0:
            self.overflow += 1
            return -1
        self._absorb(best, vec, text)
        if self.n % self.config.merge_every == 0:
            self.merge_pass()
        return best

    def _nearest(self, vec: dict[str, float], weights: dict[str, float]) -> tuple[int, float]:
        q_norm = math.sqrt(sum(weights.values()))
        dots: dict[int, float] = defaultdict(float)
        for g, w in weights.items():
            for c in self.index.get(g, ()):
                dots[c] += w * self.clusters[c].centroid[g]
        best, score = -1, 0.0
        for c, dot in dots.items():
            s = dot / (q_norm * math.sqrt(self._norm2(c)))
            if s > score:
                best, score = c, s
        return best, score

    def _norm2(self, c: int) -> float:
        if c not in self._norms:
            cluster = self.clusters[c]
            self._norms[c] = sum(v * v * self.idf(g) ** 2 for g, v in cluster.centroid.items())
        return self._norms[c]

    def _absorb(self, c: int, vec: dict[str, float], text: str) -> None:
        cluster = self.clusters[c]
        for g, v in vec.items():
            cluster.centroid[g] = cluster.centroid.get(g, 0.0) + v
            self.index[g].add(c)
        cluster.size += 1
        self._norms.pop(c, None)
        if text in cluster.texts or len(cluster.texts) < self.config.names_kept:
            cluster.texts[text] += 1

    def similarity(self, a: int, b: int) -> float:
        ca, cb = self.clusters[a].centroid, self.clusters[b].centroid
        if len(ca) > len(cb):
            ca, cb = cb, ca
        dot = sum(v * cb[g] * self.idf(g) ** 2 for g, v in ca.items() if g in cb)
        return dot / math.sqrt(self._norm2(a) * self._norm2(b)) if dot else 0.0

    def merge_pass(self) -> int:
        """Merge clusters whose centroids are similar enough; returns how many merged."""
        merged = 0
        ids = sorted(self.clusters, key=lambda c: -self.clusters[c].size)
        for i, a in enumerate(ids):
            if a not in self.clusters:
                continue
            for b in ids[i + 1 :]:
                if b in self.clusters and self.similarity(a, b) >= self.config.merge:
                    self._merge(a, b)
                    merged += 1
        return merged

    def _merge(self, keep: int, gone: int) -> None:
        src = self.clusters.pop(gone)
        dst = self.clusters[keep]
        for g, v in src.centroid.items():
            dst.centroid[g] = dst.centroid.get(g, 0.0) + v
            self.index[g].discard(gone)
            self.index[g].add(keep)
        dst.size += src.size
        self._norms.pop(keep, None)
        dst.texts.update(src.texts)
        self.parent[gone] = keep

    def root(self, c: int) -> int:
        while self.parent.get(c, c) != c:
            self.parent[c] = self.parent.get(self.parent[c], self.parent[c])
            c = self.parent[c]
        return c

    def name(self, c: int) -> str:
        """The cluster's most frequent question text (ties: the shorter, then the first)."""
        texts = self.clusters[self.root(c)].texts
        return min(texts.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))[0]
