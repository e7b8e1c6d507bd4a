"""Next-entity training objectives for sequential models, selectable by name.

Every loss sees the hidden states at the real target slots only (``(N, dim)``: padding slots
are dropped before any output projection), the head's output table ``W`` ``(n, dim)`` and the
targets ``(N,)``. Rows 0 and 1 of ``W`` (padding, unknown) are never targets nor negatives.

* ``bce``: binary cross-entropy with one uniformly sampled negative per position (SASRec,
  Kang & McAuley 2018).
* ``sampled_softmax``: softmax over the target and ``n_negatives`` items shared by the batch,
  drawn uniformly or by popularity; every logit is corrected by ``- log q(item)`` (logQ
  correction, Yi et al. 2019), and negatives that equal the row's target are masked.
* ``full_ce``: softmax cross-entropy over the whole catalogue (SASRec+, Klenitskiy & Vasilev
  2023).
* ``gbce``: generalised BCE with ``n_negatives`` uniform negatives shared by the batch
  (gSASRec, Petrov & Macdonald 2023): ``beta * softplus(-s+) + sum softplus(s-)`` where
  ``beta = alpha (t (1 - 1/alpha) + 1/alpha)`` and ``alpha = n_negatives / (n_items - 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.vocab import N_RESERVED
from recsys.inputs.windows import SequenceBatch
from recsys.models.repeat_bonus import RepeatScores
from recsys.tasks.chunked_ce import DEFAULT_CHUNK_ROWS, chunked_full_ce
from recsys.tasks.whole_batch import WholeBatch

LOSSES = ("bce", "sampled_softmax", "full_ce", "gbce")
SAMPLERS = ("uniform", "popularity")


@dataclass(frozen=True)
class LossConfig:
    name: str = "full_ce"
    n_negatives: int = 256  # sampled_softmax and gbce
    sampler: str = "uniform"  # sampled_softmax: uniform | popularity (counts ** sampler_alpha)
    sampler_alpha: float = 0.75
    gbce_t: float = 0.75  # gbce calibration: 0 = plain BCE, 1 = fully calibrated
    room_weight: float = 1.0  # weight of the next-room head's loss next to next-product
    # > 0: each slot also trains on its lagged target (``SequenceBatch.lagged``), this weighted.
    lag_loss_weight: float = 0.0
    # full_ce without a repeat bonus: rows of logits per chunk (recsys.tasks.chunked_ce); 0 keeps
    # the whole batch's logits for the backward pass.
    ce_chunk_rows: int = DEFAULT_CHUNK_ROWS
    ce_matmul_dtype: str = "float32"  # chunked full_ce: float32 | bfloat16 products

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.name!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if (
            self.n_negatives < 1
            or not 0.0 <= self.gbce_t <= 1.0
            or self.lag_loss_weight < 0
            or self.ce_chunk_rows < 0
        ):
            raise ValueError(f"invalid LossConfig: {self}")


class _FullSoftmaxCE(torch.autograd.Function):
    """Mean softmax cross-entropy over all rows of ``weight``, with lean memory traffic.

    The (N, n) logits dominate the cost (n is the catalogue), and the generic path touches them
    many times (log-softmax output, a zero-filled one-hot gradient, the log-softmax gradient, a
    transposed copy for the weight gradient). Here they are exponentiated in place once, and the
    backward pass only reads them in its two matrix products: the softmax normaliser is applied
    to the small factors instead (``p.T @ h = e.T @ (h / z)``), and the target terms are added
    separately. Sparse bonuses (flat ``keys`` into the logits, ``values``) are added to the
    logits first. Same values as ``F.cross_entropy`` (checked in the tests).
    """

    @staticmethod
    def forward(ctx, hidden, weight, target, keys, values, allowed):
        logits = hidden @ weight.t()  # (N, n)
        if len(keys):
            logits.view(-1).index_add_(0, keys, values)
        if allowed is not None:
            logits.masked_fill_(~allowed, float("-inf"))
        logits[:, :N_RESERVED] = float("-inf")
        picked = logits.gather(1, target[:, None]).squeeze(1)  # (N,)
        top = logits.amax(dim=1, keepdim=True)  # (N, 1)
        exps = logits.sub_(top).exp_()  # (N, n) unnormalised softmax, in place
        norm = exps.sum(dim=1)  # (N,)
        ctx.save_for_backward(hidden, weight, target, exps, norm, keys)
        return (top.squeeze(1) + norm.log() - picked).mean()

    @staticmethod
    def backward(ctx, grad):
        hidden, weight, target, exps, norm, keys = ctx.saved_tensors
        scale = grad / hidden.shape[0]
        row = (scale / norm)[:, None]  # (N, 1): softmax normaliser and loss scale per row
        grad_hidden = (exps @ weight).mul_(row) - scale * weight[target]
        grad_weight = exps.t() @ (hidden * row)
        grad_weight.index_add_(0, target, hidden * -scale)
        grad_values = None
        if ctx.needs_input_grad[4]:
            n = exps.shape[1]
            rows = keys // n
            hit = (keys == rows * n + target[rows]).to(exps.dtype)
            grad_values = exps.view(-1)[keys] * row[rows, 0] - scale * hit
        return grad_hidden, grad_weight, None, None, grad_values, None


def full_ce(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bonus: RepeatScores | None = None,
    allowed: torch.Tensor | None = None,
    chunk_rows: int = 0,
    matmul_dtype: str = "float32",
) -> torch.Tensor:
    """Softmax cross-entropy over the catalogue, or over the ``allowed`` (N, n) items per row;
    in chunks of ``chunk_rows`` rows when there is no bonus to learn."""
    # Mixed precision stops here: a softmax over the whole catalogue needs float32 logits.
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        if bonus is None and chunk_rows > 0:
            return chunked_full_ce(
                hidden.float(), weight.float(), target, allowed, chunk_rows, matmul_dtype
            )
        if bonus is None:
            keys = torch.zeros(0, dtype=torch.int64, device=hidden.device)
            values = torch.zeros(0, dtype=torch.float32, device=hidden.device)
        else:
            keys, values = bonus.keys, bonus.values.float()
        return _FullSoftmaxCE.apply(hidden.float(), weight.float(), target, keys, values, allowed)


def _bonus(bonus: RepeatScores | None, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """The repeat bonus of (row, item) pairs, broadcast to a common shape (0 without bonuses)."""
    rows, items = torch.broadcast_tensors(rows, items)
    if bonus is None:
        return torch.zeros(rows.shape, device=rows.device)
    return bonus.lookup(rows, items).float()


def bce_one_negative(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    negative: torch.Tensor,
    bonus: RepeatScores | None = None,
) -> torch.Tensor:
    rows = torch.arange(len(target), device=target.device)
    pos = (hidden * weight[target]).sum(-1).float() + _bonus(bonus, rows, target)  # (N,)
    neg = (hidden * weight[negative]).sum(-1).float() + _bonus(bonus, rows, negative)
    return (F.softplus(-pos) + F.softplus(neg)).mean()


def sampled_softmax(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    negatives: torch.Tensor,
    log_q: torch.Tensor,
    bonus: RepeatScores | None = None,
) -> torch.Tensor:
    """``log_q`` (n,) is the log sampling probability of every item."""
    rows = torch.arange(len(target), device=target.device)[:, None]  # (N, 1)
    pos = (hidden * weight[target]).sum(-1, keepdim=True).float() - log_q[target][:, None]
    pos = pos + _bonus(bonus, rows, target[:, None])
    neg = (hidden @ weight[negatives].t()).float() - log_q[negatives][None, :]  # (N, K)
    neg = neg + _bonus(bonus, rows, negatives[None, :])
    neg = neg.masked_fill(negatives[None, :] == target[:, None], float("-inf"))
    logits = torch.cat([pos, neg], dim=1)  # (N, 1 + K); the target is column 0
    return F.cross_entropy(logits, torch.zeros_like(target))


def gbce_beta(n_negatives: int, n_items: int, t: float) -> float:
    alpha = n_negatives / (n_items - 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    negatives: torch.Tensor,
    beta: float,
    bonus: RepeatScores | None = None,
) -> torch.Tensor:
    rows = torch.arange(len(target), device=target.device)
    pos = (hidden * weight[target]).sum(-1).float() + _bonus(bonus, rows, target)  # (N,)
    neg = (hidden @ weight[negatives].t()).float()  # (N, K)
    neg = neg + _bonus(bonus, rows[:, None], negatives[None, :])
    hit = negatives[None, :] == target[:, None]
    neg_loss = F.softplus(neg).masked_fill(hit, 0.0).sum(-1)
    return (beta * F.softplus(-pos) + neg_loss).mean()


class SequentialTask(nn.Module):
    """The configured loss summed over the model's heads (room head weighted)."""

    def __init__(
        self,
        config: LossConfig,
        *,
        n_entities: Mapping[str, int],
        counts: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.n_entities = dict(n_entities)
        for head, n in self.n_entities.items():
            self.register_buffer(f"log_q_{head}", self._log_q(head, n, counts), persistent=False)

    def _log_q(self, head: str, n: int, counts: Mapping[str, np.ndarray] | None) -> torch.Tensor:
        """(n,) log sampling probability; reserved rows get probability 0."""
        c = self.config
        if c.sampler == "popularity" and counts is not None and head in counts:
            p = np.asarray(counts[head], dtype=np.float64) ** c.sampler_alpha
        else:
            p = np.ones(n, dtype=np.float64)
        p[:N_RESERVED] = 0.0
        p = np.maximum(p, 0.0)
        p /= p.sum()
        with np.errstate(divide="ignore"):
            return torch.from_numpy(np.log(p).astype(np.float32))

    def sample(self, head: str, size: int, generator: torch.Generator) -> torch.Tensor:
        """``size`` items drawn (with replacement) from the head's sampling distribution."""
        log_q = getattr(self, f"log_q_{head}")
        if self.config.sampler == "uniform" or self.config.name in ("bce", "gbce"):
            n = self.n_entities[head]
            return torch.randint(N_RESERVED, n, (size,), generator=generator)
        return torch.multinomial(log_q.cpu().exp(), size, replacement=True, generator=generator)

    def head_loss(
        self, hidden, weight, target, head: str, generator, bonus=None, allowed=None, mine=None
    ) -> torch.Tensor:
        """The configured loss of one head; ``allowed`` (live sets) applies to ``full_ce``;
        ``mine``: (where these N targets sit among the whole batch's, how many it holds), for
        ``bce`` to draw one negative per target of the whole batch and keep its own."""
        c = self.config
        if c.name == "full_ce":
            return full_ce(
                hidden, weight, target, bonus, allowed, c.ce_chunk_rows, c.ce_matmul_dtype
            )
        if c.name == "bce":
            if mine is None:
                negative = self.sample(head, len(target), generator)
            else:
                places, n_whole = mine
                negative = self.sample(head, n_whole, generator)[places]
            return bce_one_negative(hidden, weight, target, negative.to(target.device), bonus)
        negatives = self.sample(head, c.n_negatives, generator).to(target.device)
        if c.name == "sampled_softmax":
            log_q = getattr(self, f"log_q_{head}")
            return sampled_softmax(hidden, weight, target, negatives, log_q, bonus)
        beta = gbce_beta(c.n_negatives, self.n_entities[head] - N_RESERVED, c.gbce_t)
        return gbce(hidden, weight, target, negatives, beta, bonus)

    def shares(self, batch: SequenceBatch) -> dict[str, torch.Tensor]:
        """Per head (and ``<head>@lag``), each row's number of targets: a part of a split batch
        needs the whole batch's to take its share of the per-head means (``WholeBatch``)."""
        out = {h: (t > 0).sum(1).cpu() for h, t in batch.targets.items()}
        if self.config.lag_loss_weight > 0 and batch.lagged:
            out.update({f"{h}@lag": (t > 0).sum(1).cpu() for h, t in batch.lagged.items()})
        return out

    def forward(
        self,
        model: nn.Module,
        batch: SequenceBatch,
        generator: torch.Generator,
        whole: WholeBatch | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(total loss, per-head loss values) of one batch: the next targets' loss plus
        ``lag_loss_weight`` times the lagged targets' (parts ``<head>@lag``). With ``whole``,
        the batch is a part of it and the total is this part's term of the whole batch's loss
        (the per-head values stay this part's means)."""
        hidden = model(batch)  # (B, L, dim)
        total, parts = self.targets_loss(
            model, batch, hidden, batch.targets, batch.candidates, generator, whole
        )
        w = self.config.lag_loss_weight
        if w > 0 and batch.lagged:
            lagged, lag_parts = self.targets_loss(
                model, batch, hidden, batch.lagged, batch.lagged_candidates, generator, whole,
                suffix="@lag",
            )  # fmt: skip
            total = total + w * lagged
            parts.update({f"{h}@lag": v for h, v in lag_parts.items()})
        return total, parts

    def targets_loss(
        self,
        model: nn.Module,
        batch: SequenceBatch,
        hidden: torch.Tensor,
        targets: Mapping[str, torch.Tensor],
        candidates: Mapping[str, torch.Tensor],
        generator: torch.Generator,
        whole: WholeBatch | None = None,
        suffix: str = "",
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The heads' losses summed (room head weighted) for one set of (B, L) targets."""
        total = hidden.new_zeros((), dtype=torch.float32)
        parts: dict[str, torch.Tensor] = {}
        for head, target in targets.items():
            real = target > 0  # (B, L)
            if not bool(real.any()):
                continue
            h, t = hidden[real], target[real]  # (N, dim), (N,)
            bonus = model.repeats(batch, hidden, real, head)
            allowed = candidates.get(head)
            key = head + suffix
            mine = None
            if whole is not None and self.config.name == "bce":
                mine = (whole.own_items(key), int(whole.total(key)))
            loss = self.head_loss(
                h, model.head_weight(head), t, head, generator, bonus, allowed, mine
            )
            parts[head] = loss.detach()
            if whole is not None:  # this part's share of the whole batch's mean
                loss = loss * (len(t) / whole.total(key))
            total = total + (self.config.room_weight if head == "streamer" else 1.0) * loss
        return total, parts


def check_finite(loss: torch.Tensor, where: str) -> None:
    if not math.isfinite(float(loss)):
        raise FloatingPointError(f"{where}: loss is {float(loss)}")
