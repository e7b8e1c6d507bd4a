"""The reference SASRec of benchmarks/train_speed.py scores without dropout, whatever mode its
training loop left it in, and hands the model back in that mode."""

from __future__ import annotations

import numpy as np
import torch
from harness.reference_sasrec import ReferenceRecommender, ReferenceSASRec

from recsys.data.interactions import Interactions
from recsys.data.vocab import Vocab


def _history(n_users: int = 4, n_items: int = 30):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(n_users), 6)
    items = rng.integers(0, n_items, len(users))
    uv, iv = Vocab.build("user", users), Vocab.build("item", items)
    return Interactions(uv.encode(users), iv.encode(items), np.arange(len(users)), uv, iv)


def test_reference_scores_in_eval_mode_and_restores_the_training_mode():
    torch.manual_seed(0)
    history = _history().sequences()
    model = ReferenceSASRec(history.n_items).train()
    rec = ReferenceRecommender(model)
    users = np.arange(history.n_users)
    first = rec.score(users, history)
    assert model.training
    assert np.array_equal(first, rec.score(users, history))  # no dropout: repeatable
    model.eval()
    assert np.array_equal(first, rec.score(users, history)) and not model.training
