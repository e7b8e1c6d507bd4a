"""Questions in comments: detection, online clusters against planted intents, naming."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.liveroom.evaluation import adjusted_rand_index
from recsys.liveroom.questions import ClusterConfig, QuestionClusterer, is_question, normalise
from recsys.simulation.questions import CHAT, CHAT_LABEL, INTENTS, render


def test_detects_questions_and_leaves_chat_alone():
    for text in (
        "小个子能穿吗",
        "尺码准不准",
        "多少钱",
        "什么时候发货",
        "是正品吗??",
        "油皮适合用嘛",
    ):
        assert is_question(text), text
    for text in CHAT:
        assert not is_question(text), text


def test_normalise_folds_width_case_and_punctuation():
    assert normalise("ＸＬ码 偏大？！") == "xl码偏大"


def test_rendered_questions_carry_typos_and_their_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, len(INTENTS), 3000)
    rendered = render(rng, labels)
    assert (rendered.label == labels).all()
    texts = pd.Series(rendered.text[labels >= 0])
    assert texts.nunique() > 500  # paraphrases: many distinct texts
    assert texts.str.contains("嘛|马|川|前|获|证|试|拥|民|架|块|宝|\\?\\?").mean() > 0.05  # typos
    assert set(rendered.text[labels == CHAT_LABEL]) <= set(CHAT)


def test_online_clusters_recover_planted_intents():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, len(INTENTS), 4000)
    texts = render(rng, labels).text
    clusterer = QuestionClusterer(ClusterConfig())
    found = [clusterer.add(t) for t in texts]
    roots = [clusterer.root(c) for c in found]
    assert adjusted_rand_index(labels, roots) > 0.85
    purity = pd.DataFrame({"c": roots, "y": labels}).groupby("c")["y"].agg(
        lambda s: s.value_counts().iloc[0]
    ).sum() / len(labels)
    assert purity > 0.95
    # Each big cluster is named by one of its own questions.
    big = pd.Series(roots).value_counts().index[:3]
    for c in big:
        assert clusterer.name(c) in set(texts[np.array(roots) == c])


def test_merging_keeps_earlier_assignments_with_their_cluster():
    clusterer = QuestionClusterer(ClusterConfig(join=0.99, merge=0.3, merge_every=10**9))
    a, b = clusterer.add("小个子能穿吗"), clusterer.add("小个子穿会长吗")
    assert a != b  # join threshold too high to join at once
    assert clusterer.merge_pass() == 1
    assert clusterer.root(a) == clusterer.root(b)
    assert clusterer.name(b) in {"小个子能穿吗", "小个子穿会长吗"}


def test_adjusted_rand_index_known_values():
    assert adjusted_rand_index([0, 0, 1, 1], [5, 5, 7, 7]) == 1.0
    assert abs(adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) - (-0.5)) < 1e-12
