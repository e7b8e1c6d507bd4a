"""How well profiles and tags recover the planted truth of a synthetic world (``truth/``).

Every user of ``truth/users.parquet`` counts, including users with no events at all (they get
no profile, hence no tag: a miss for recall). Where a target depends on evidence, the same
numbers are also given on the users (or pairs) with enough evidence, labelled as such.

* interest tags ``interest_<category>`` vs truth ``interest_<category> >= 0.15`` (the planted
  ``interest:<category>`` tags), per category and pooled;
* price sensitivity: Spearman correlation of the profile's ``price_sensitivity`` with the true
  value, and the ``price_sensitive`` tag vs truth ``price_sensitivity >= 0.65``;
* ``loyal_streamer:<id>`` tags vs ``truth/trusted_streamers``;
* informational: domestic / imported brand tags, ``power_index`` vs purchasing power,
  ``topic_focus_ingredients`` vs a non-neutral skin type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from recsys.profiling.pipeline import ProfileResult

INTEREST_THRESHOLD = 0.15  # truth.INTEREST_TAG_THRESHOLD
SENSITIVE_THRESHOLD = 0.65  # truth.SENSITIVE_TAG_THRESHOLD
DOMESTIC_TAG, IMPORTED_TAG = 0.75, 0.35  # truth.DOMESTIC_TAG, truth.IMPORTED_TAG
MIN_VISITS_FOR_INTEREST = 30  # "enough evidence" for interest tags
MIN_EVIDENCE_FOR_PRICE = 50  # clicks + comments + purchases, for price sensitivity
MIN_VISITS_FOR_TRUST = 2  # a streamer visited at least twice can show repeat behaviour


def precision_recall(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    tp = int(np.sum(predicted & actual))
    n_pred, n_true = int(predicted.sum()), int(actual.sum())
    return {
        "precision": tp / n_pred if n_pred else float("nan"),
        "recall": tp / n_true if n_true else float("nan"),
        "predicted": n_pred,
        "actual": n_true,
    }


def _tag_matrix(tags: pd.DataFrame, user_ids: np.ndarray, tag_ids: list[str]) -> np.ndarray:
    """(U, T) bool: user i holds tag j."""
    out = np.zeros((len(user_ids), len(tag_ids)), dtype=bool)
    rows = tags[tags["tag_id"].isin(tag_ids)]
    u = pd.Index(user_ids).get_indexer(rows["user_id"])
    t = pd.Index(tag_ids).get_indexer(rows["tag_id"])
    out[u[u >= 0], t[u >= 0]] = True
    return out


def _profile_column(result: ProfileResult, user_ids: np.ndarray, column: str, fill=np.nan):
    users = result.profiles.users
    pos = pd.Index(users["user_id"]).get_indexer(user_ids)
    values = users[column].to_numpy(dtype=np.float64)
    return np.where(pos >= 0, values[np.maximum(pos, 0)], fill)


def interest_accuracy(result: ProfileResult, truth: pd.DataFrame) -> dict:
    cats = list(result.profiles.categories)
    uid = truth["user_id"].to_numpy(dtype=np.int64)
    actual = truth[[f"interest_{c}" for c in cats]].to_numpy() >= INTEREST_THRESHOLD
    predicted = _tag_matrix(result.tags, uid, [f"interest_{c}" for c in cats])
    visits = _profile_column(result, uid, "n_visits", fill=0.0)
    enough = visits >= MIN_VISITS_FOR_INTEREST
    ours = np.column_stack([_profile_column(result, uid, f"interest_{c}", 0.0) for c in cats])
    true_top = truth[[f"interest_{c}" for c in cats]].to_numpy().argmax(axis=1)
    return {
        "all_users": precision_recall(predicted, actual) | {"users": len(uid)},
        f"users_with_{MIN_VISITS_FOR_INTEREST}+_visits": precision_recall(
            predicted[enough], actual[enough]
        )
        | {"users": int(enough.sum())},
        "per_category": {
            c: precision_recall(predicted[:, i], actual[:, i]) for i, c in enumerate(cats)
        },
        "top_interest_accuracy": float(np.mean(ours.argmax(axis=1) == true_top)),
        "by_visits": _by_bucket(predicted, actual, visits, (0, 10, 30, 60, 120, np.inf)),
    }


def _by_bucket(predicted, actual, evidence, edges) -> list[dict]:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (evidence >= lo) & (evidence < hi)
        out.append(
            {"visits": f"[{lo}, {hi})", "users": int(sel.sum())}
            | precision_recall(predicted[sel], actual[sel])
        )
    return out


def sensitivity_accuracy(result: ProfileResult, truth: pd.DataFrame) -> dict:
    uid = truth["user_id"].to_numpy(dtype=np.int64)
    true_s = truth["price_sensitivity"].to_numpy()
    ours = _profile_column(result, uid, "price_sensitivity", fill=0.5)  # no events: the median
    evidence = _profile_column(result, uid, "price_evidence", fill=0.0)
    enough = evidence >= MIN_EVIDENCE_FOR_PRICE
    tagged = _tag_matrix(result.tags, uid, ["price_sensitive"])[:, 0]
    return {
        "spearman_all_users": float(spearmanr(ours, true_s)[0]),
        f"spearman_users_with_{MIN_EVIDENCE_FOR_PRICE}+_evidence": float(
            spearmanr(ours[enough], true_s[enough])[0]
        ),
        "users_with_enough_evidence": int(enough.sum()),
        "users": len(uid),
        "price_sensitive_tag": precision_recall(tagged, true_s >= SENSITIVE_THRESHOLD),
    }


def trust_accuracy(result: ProfileResult, trusted: pd.DataFrame) -> dict:
    """Loyal-streamer tags vs the planted trusted (user, streamer) pairs."""
    loyal = result.tags[result.tags["rule_id"] == "loyal_streamer:*"]
    predicted = pd.MultiIndex.from_arrays([loyal["user_id"], loyal["entity"].astype(np.int64)])
    actual = pd.MultiIndex.from_arrays([trusted["user_id"], trusted["streamer_id"]])
    hit = actual.isin(predicted)
    pairs = result.profiles.streamers
    met = pd.MultiIndex.from_arrays([pairs["user_id"], pairs["streamer_id"]])
    visits = np.zeros(len(actual))
    pos = met.get_indexer(actual)
    visits[pos >= 0] = pairs["visits"].to_numpy()[pos[pos >= 0]]
    enough = visits >= MIN_VISITS_FOR_TRUST
    confidence = loyal["confidence"].to_numpy()
    correct = predicted.isin(actual)
    curve = [
        {
            "min_confidence": c,
            "precision": float(correct[confidence >= c].mean()),
            "recall": float(actual.isin(predicted[confidence >= c]).mean()),
        }
        for c in (0.5, 0.7, 0.9)
    ]
    return {
        "recall_all_pairs": float(hit.mean()),
        "precision": float(correct.mean()) if len(correct) else float("nan"),
        "true_pairs": len(actual),
        "tagged_pairs": len(predicted),
        f"recall_pairs_with_{MIN_VISITS_FOR_TRUST}+_visits": float(hit[enough].mean()),
        "pairs_with_enough_visits": int(enough.sum()),
        "pairs_never_visited": int((visits == 0).sum()),
        "by_min_confidence": curve,
    }


def informational(result: ProfileResult, truth: pd.DataFrame) -> dict:
    uid = truth["user_id"].to_numpy(dtype=np.int64)
    tags = _tag_matrix(
        result.tags, uid, ["domestic_supporter", "import_lover", "topic_focus_ingredients"]
    )
    domestic = truth["brand_pref_domestic"].to_numpy()
    power = _profile_column(result, uid, "power_index")
    bought = _profile_column(result, uid, "n_purchases", fill=0.0) > 0
    return {
        "domestic_supporter_vs_prefers_domestic": precision_recall(
            tags[:, 0], domestic >= DOMESTIC_TAG
        ),
        "import_lover_vs_prefers_imported": precision_recall(tags[:, 1], domestic <= IMPORTED_TAG),
        "ingredients_topic_vs_nonneutral_skin": precision_recall(
            tags[:, 2], truth["skin_type"].to_numpy() != "中性皮"
        ),
        "domestic_share_spearman": float(
            spearmanr(_profile_column(result, uid, "domestic_share", 0.0), domestic)[0]
        ),
        "power_index_spearman_buyers": float(
            spearmanr(power[bought], truth["purchasing_power"].to_numpy()[bought])[0]
        ),
    }


def truth_accuracy(result: ProfileResult, world_dir: str | Path) -> dict:
    """All accuracy numbers of ``result`` against the world's ``truth/`` folder."""
    truth_dir = Path(world_dir) / "truth"
    truth = pd.read_parquet(truth_dir / "users.parquet")
    trusted = pd.read_parquet(truth_dir / "trusted_streamers.parquet")
    return {
        "interest": interest_accuracy(result, truth),
        "price_sensitivity": sensitivity_accuracy(result, truth),
        "trusted_streamers": trust_accuracy(result, trusted),
        "informational": informational(result, truth),
    }
