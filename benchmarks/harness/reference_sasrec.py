"""The original SASRec model and batch sampler (Kang & McAuley's code as ported to PyTorch), in
plain torch: the reference loop ``benchmarks/train_speed.py`` measures against.

Every step samples a batch of users in Python and numpy (last ``maxlen`` items, next-item
targets, one negative per position drawn by rejection from the items the user has not seen) and
runs the original block layout (``nn.MultiheadAttention``, convolutional feed-forward).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recsys.core import Recommender
from recsys.data.interactions import UserSequences

MAXLEN, DIM, BLOCKS, HEADS, DROPOUT, BATCH, LR = 200, 50, 2, 1, 0.2, 128, 1e-3


class PointWiseFeedForward(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(dim, dim, 1), nn.Conv1d(dim, dim, 1)
        self.drop1, self.drop2, self.relu = nn.Dropout(dropout), nn.Dropout(dropout), nn.ReLU()

    def forward(self, x):
        out = self.conv2(self.drop1(self.relu(self.conv1(x.transpose(-1, -2)))))
        return self.drop2(out).transpose(-1, -2) + x  # (B, L, D)


class ReferenceSASRec(nn.Module):
    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items, DIM, padding_idx=0)
        self.pos_emb = nn.Embedding(MAXLEN, DIM)
        self.emb_dropout = nn.Dropout(DROPOUT)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(DIM, eps=1e-8) for _ in range(BLOCKS))
        self.attns = nn.ModuleList(
            nn.MultiheadAttention(DIM, HEADS, DROPOUT) for _ in range(BLOCKS)
        )
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(DIM, eps=1e-8) for _ in range(BLOCKS))
        self.ffns = nn.ModuleList(PointWiseFeedForward(DIM, DROPOUT) for _ in range(BLOCKS))
        self.last_norm = nn.LayerNorm(DIM, eps=1e-8)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)

    def log2feats(self, seqs_np: np.ndarray) -> torch.Tensor:
        ids = torch.from_numpy(seqs_np)
        seqs = self.item_emb(ids) * DIM**0.5
        positions = np.tile(np.arange(ids.shape[1]), [ids.shape[0], 1])
        seqs = self.emb_dropout(seqs + self.pos_emb(torch.from_numpy(positions)))
        keep = (ids != 0).unsqueeze(-1)
        seqs = seqs * keep
        length = seqs.shape[1]
        causal = ~torch.tril(torch.ones((length, length), dtype=torch.bool))
        for norm, attn, ffn_norm, ffn in zip(
            self.attn_norms, self.attns, self.ffn_norms, self.ffns, strict=True
        ):
            seqs = seqs.transpose(0, 1)  # (L, B, D) for MultiheadAttention
            q = norm(seqs)
            out, _ = attn(q, seqs, seqs, attn_mask=causal)
            seqs = (q + out).transpose(0, 1)
            seqs = ffn(ffn_norm(seqs)) * keep
        return self.last_norm(seqs)  # (B, L, D)

    def forward(self, seq, pos, neg):
        feats = self.log2feats(seq)
        pos_logits = (feats * self.item_emb(torch.from_numpy(pos))).sum(-1)
        neg_logits = (feats * self.item_emb(torch.from_numpy(neg))).sum(-1)
        return pos_logits, neg_logits


def random_neq(low: int, high: int, seen: set, rng: np.random.Generator) -> int:
    t = int(rng.integers(low, high))
    while t in seen:
        t = int(rng.integers(low, high))
    return t


def sample_batch(rows: list[np.ndarray], n_items: int, rng: np.random.Generator):
    """The original sampler: random users, their last items, targets and one negative each."""
    seq = np.zeros((BATCH, MAXLEN), dtype=np.int64)
    pos, neg = np.zeros_like(seq), np.zeros_like(seq)
    for b in range(BATCH):
        user = int(rng.integers(0, len(rows)))
        while len(rows[user]) <= 1:
            user = int(rng.integers(0, len(rows)))
        items = rows[user]
        seen, nxt, idx = set(items.tolist()), items[-1], MAXLEN - 1
        for i in reversed(items[:-1]):
            seq[b, idx], pos[b, idx] = i, nxt
            neg[b, idx] = random_neq(2, n_items, seen, rng)
            nxt, idx = i, idx - 1
            if idx == -1:
                break
    return seq, pos, neg


class ReferenceRecommender(Recommender):
    """Scores every item from the reference model's last hidden state (for evaluation)."""

    name = "reference_sasrec"

    def __init__(self, model: ReferenceSASRec) -> None:
        self.model = model

    def fit(self, train, *, item_features=None):
        return self

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        seq = np.zeros((len(users), MAXLEN), dtype=np.int64)
        for b, u in enumerate(users):
            items = history.row(int(u))[-MAXLEN:]
            seq[b, MAXLEN - len(items) :] = items
        # Without dropout, whatever mode the training loop left the model in, then restored.
        training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                last = self.model.log2feats(seq)[:, -1]  # (B, D)
                return (last @ self.model.item_emb.weight.t()).numpy()
        finally:
            self.model.train(training)
