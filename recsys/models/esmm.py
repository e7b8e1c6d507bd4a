"""ESMM: click-through and post-click conversion towers over one candidate feature vector.

Entire Space Multi-task Model (Ma et al., SIGIR 2018): two towers read the same input, one
predicts pCTR = P(click | impression), the other pCVR = P(conversion | click), and their
product pCTCVR = P(click and conversion | impression) is what the conversion label supervises.
Both losses are taken over every impression (``recsys.tasks.esmm``), so the CVR tower is
trained on the space it is used on, not only on the clicked rows.

The input is the ranker's dense feature vector (``recsys.ranking.candidate_features``),
standardised with a mean and scale stored as buffers (set once from the training rows with
``set_standardisation``), optionally joined by embeddings of categorical ids that both towers
share (as the paper's shared embedding layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.row_dropout import RowDropout


@dataclass(frozen=True)
class ESMMConfig:
    n_features: int
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.0
    categorical: tuple[tuple[str, int], ...] = ()  # (name, number of ids) of id inputs
    embedding_dim: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(
            self, "categorical", tuple((str(n), int(c)) for n, c in self.categorical)
        )
        if self.n_features < 1 or not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"ESMMConfig: need n_features >= 1 and positive hidden sizes: {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ESMMConfig.dropout must lie in [0, 1), got {self.dropout}")


def _tower(in_dim: int, hidden: tuple[int, ...], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), RowDropout(dropout)]
        in_dim = width
    layers.append(nn.Linear(in_dim, 1))
    return nn.Sequential(*layers)


class ESMM(nn.Module):
    def __init__(self, config: ESMMConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(config.n_features))
        self.register_buffer("scale", torch.ones(config.n_features))
        self.embeddings = nn.ModuleDict(
            {name: nn.Embedding(n, config.embedding_dim) for name, n in config.categorical}
        )
        in_dim = config.n_features + len(config.categorical) * config.embedding_dim
        self.ctr = _tower(in_dim, config.hidden, config.dropout)
        self.cvr = _tower(in_dim, config.hidden, config.dropout)

    def set_standardisation(self, features: np.ndarray) -> None:
        """Centre and scale inputs by the training rows' mean and std (constant columns: 1)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.config.n_features:
            raise ValueError(
                f"ESMM: expected (n, {self.config.n_features}) features, got {x.shape}"
            )
        std = x.std(axis=0)
        self.mean.copy_(torch.from_numpy(x.mean(axis=0)).float())
        self.scale.copy_(torch.from_numpy(np.where(std > 1e-8, std, 1.0)).float())

    def _inputs(self, x: torch.Tensor, ids: dict[str, torch.Tensor] | None) -> torch.Tensor:
        parts = [(x - self.mean) / self.scale]
        if self.embeddings:
            if ids is None or set(ids) != set(self.embeddings):
                raise ValueError(f"ESMM: expected ids {sorted(self.embeddings)}")
            parts += [self.embeddings[name](ids[name]) for name in self.embeddings]
        return torch.cat(parts, dim=1)  # (B, in_dim)

    def forward(
        self, x: torch.Tensor, ids: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(CTR logits (B,), CVR logits (B,)) of a (B, n_features) batch."""
        h = self._inputs(x, ids)
        return self.ctr(h).squeeze(1), self.cvr(h).squeeze(1)

    @torch.no_grad()
    def predict(
        self, features: np.ndarray, ids: dict[str, np.ndarray] | None = None, batch_size=65_536
    ) -> dict[str, np.ndarray]:
        """``pctr``, ``pcvr`` and ``pctcvr`` (float64 arrays) of feature rows, in eval mode."""
        was_training = self.training
        self.eval()
        device = self.mean.device
        ctr, cvr = [], []
        for lo in range(0, len(features), batch_size):
            x = torch.as_tensor(np.asarray(features[lo : lo + batch_size]), dtype=torch.float32)
            part = None if ids is None else {
                k: torch.as_tensor(v[lo : lo + batch_size], dtype=torch.long, device=device)
                for k, v in ids.items()
            }  # fmt: skip
            a, b = self(x.to(device), part)
            ctr.append(F.sigmoid(a).double().cpu().numpy())
            cvr.append(F.sigmoid(b).double().cpu().numpy())
        self.train(was_training)
        pctr = np.concatenate(ctr) if ctr else np.zeros(0)
        pcvr = np.concatenate(cvr) if cvr else np.zeros(0)
        return {"pctr": pctr, "pcvr": pcvr, "pctcvr": pctr * pcvr}
