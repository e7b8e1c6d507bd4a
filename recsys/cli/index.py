"""`recsys-index`: build and save the candidate index of a trained model (recsys/conf/index.yaml).

For every head the run trained (products; live rooms on a world), the model's candidate
vectors (the two-tower's candidate tower, or a sequential model's output embeddings) go into a
FAISS index from the configured factory string, keyed by the entities' raw ids, and are saved
beside the checkpoint (``<run>/index/<head>/``), where serving and ``recsys.retrieval`` load them.
Rows 0 and 1 of every vocabulary (padding, unknown) are never indexed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def index_dir(checkpoint: Path, out_dir: str | None) -> Path:
    return Path(out_dir) if out_dir else checkpoint.parent / "index"


def build_indexes(cfg: DictConfig) -> dict[str, dict]:
    """Build, save and describe one index per head; returns {head: summary}."""
    from recsys.core import EmbeddingRecommender
    from recsys.recommenders.restore import restore_from_config
    from recsys.recommenders.sequential import horizon
    from recsys.retrieval import CandidateIndex, IndexConfig

    restored = restore_from_config(cfg)
    rec, data = restored.recommender, restored.data
    if not isinstance(rec, EmbeddingRecommender):
        raise ValueError(f"{restored.path}: {type(rec).__name__} has no candidate embeddings")
    settings = IndexConfig(**dict(cfg.index))
    out = index_dir(restored.path, cfg.out_dir)
    at = int(cfg.at) if cfg.at is not None else horizon(data.train_split.train)
    summary = {}
    for head, split in data.splits.items():
        started = time.perf_counter()
        vectors = rec.candidate_embeddings(head, at=at)[2:]  # (n, d)
        index = CandidateIndex.build(vectors, split.item_vocab.ids, settings)
        path = index.save(out / head)
        summary[head] = {
            "path": str(path),
            "count": len(index),
            "dim": index.dim,
            "factory": settings.factory,
            "at": at,
            "seconds": round(time.perf_counter() - started, 3),
        }
        log.info("%s: %d vectors -> %s", head, len(index), path)
    (out / "indexes.json").write_text(
        json.dumps({"checkpoint": str(restored.path), "heads": summary}, indent=2) + "\n"
    )
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="index")
def main(cfg: DictConfig) -> None:
    for head, info in build_indexes(cfg).items():
        print(f"{head}: {info['count']} x {info['dim']} {info['factory']} -> {info['path']}")


if __name__ == "__main__":
    main()
