"""Published numbers our benchmark tables are compared with, with their exact protocols.

Numbers on different protocols cannot be compared (sampled metrics are several times the
full-ranking ones), so each reference names the protocol it was measured under.
"""

from __future__ import annotations

_SASREC = "Kang & McAuley, Self-Attentive Sequential Recommendation, ICDM 2018, Table III"
_SASREC_PROTOCOL = (
    "leave-one-out; target ranked among 100 uniformly sampled items the user has not "
    "interacted with; users with < 3 actions not evaluated; up to 10,000 users sampled"
)
_KV = "Klenitskiy & Vasilev, Turning Dross Into Gold Loss, RecSys 2023"
_KV_PROTOCOL = "leave-one-out; full ranking over all items, seen items removed"
_BSAREC = (
    "BSARec (Shin et al., AAAI 2024), yehjin-shin/BSARec src/output/BSARec_Beauty_best.log: "
    "hidden 64, maxlen 50, dropout 0.5, lr 5e-4, batch 256, full softmax"
)
_EASE_FAITHFUL = "independent EASE (lambda 50, every item, refit on train + validation)"

REFERENCES: dict[tuple[str, str], list[dict]] = {
    ("amazon-games-sasrec", "sampled"): [
        {"model": "PopRec", "hr@10": 0.4724, "ndcg@10": 0.2779, "source": _SASREC},
        {"model": "BPR", "hr@10": 0.4853, "ndcg@10": 0.2875, "source": _SASREC},
        {"model": "SASRec", "hr@10": 0.7410, "ndcg@10": 0.5360, "source": _SASREC},
    ],
    ("amazon-beauty-bert4rec", "full"): [
        {"model": "SASRec (BCE, 1 negative)", "hr@10": 0.0246, "ndcg@10": 0.0126, "source": _KV},
        {"model": "BERT4Rec", "hr@10": 0.0338, "ndcg@10": 0.0187, "source": _KV},
        {"model": "SASRec+ (full CE)", "hr@10": 0.0533, "ndcg@10": 0.0327, "source": _KV},
    ],
    ("amazon-beauty-s3rec", "full"): [
        {"model": "BSARec", "hr@10": 0.1008, "ndcg@10": 0.0611, "source": _BSAREC},
    ],
    ("amazon-games-sasrec", "full"): [
        {"model": "EASE", "hr@10": None, "ndcg@10": 0.0489, "source": _EASE_FAITHFUL},
    ],
}
PROTOCOLS = {
    "amazon-games-sasrec": _SASREC_PROTOCOL,
    "amazon-beauty-bert4rec": _KV_PROTOCOL,
    "amazon-beauty-s3rec": _KV_PROTOCOL,
}
FULL_PROTOCOLS = {"amazon-games-sasrec": _KV_PROTOCOL}


def references_for(dataset: str, protocol: str) -> dict:
    """Published rows for this dataset and protocol, with the protocol they used."""
    rows = REFERENCES.get((dataset, protocol), [])
    named = FULL_PROTOCOLS.get(dataset) if protocol == "full" else None
    return {"protocol": named or PROTOCOLS.get(dataset, ""), "rows": rows} if rows else {}
