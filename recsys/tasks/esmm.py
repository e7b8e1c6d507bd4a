"""The ESMM objective: click and click-and-convert, both over every impression.

For an impression with click label ``y`` and conversion label ``z`` (``z = 1`` only with a
click), CTR logit ``a`` and CVR logit ``b``::

    loss = BCE(sigmoid(a), y) + ctcvr_weight * BCE(sigmoid(a) * sigmoid(b), y * z)

averaged over the batch. The product's logs are computed stably:
``log p = logsigmoid(a) + logsigmoid(b)`` and
``log(1 - p) = logsumexp(0, a, b) - softplus(a) - softplus(b)``, because
``1 - sigmoid(a) sigmoid(b) = (1 + e^a + e^b) / ((1 + e^a)(1 + e^b))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def esmm_loss(
    ctr_logit: torch.Tensor,
    cvr_logit: torch.Tensor,
    click: torch.Tensor,
    conversion: torch.Tensor,
    ctcvr_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(total loss, {"ctr": ..., "ctcvr": ...}) of one batch; labels are 0/1 tensors."""
    a, b = ctr_logit.float(), cvr_logit.float()
    y = click.float()
    yz = y * conversion.float()
    ctr = F.binary_cross_entropy_with_logits(a, y)
    log_p = F.logsigmoid(a) + F.logsigmoid(b)
    zero = torch.zeros_like(a)
    log_not_p = torch.logsumexp(torch.stack([zero, a, b]), dim=0) - F.softplus(a) - F.softplus(b)
    ctcvr = -(yz * log_p + (1.0 - yz) * log_not_p).mean()
    return ctr + ctcvr_weight * ctcvr, {"ctr": ctr.detach(), "ctcvr": ctcvr.detach()}


class ESMMTask(nn.Module):
    """``task(model, batch, generator)`` for the shared ``Trainer``."""

    def __init__(self, ctcvr_weight: float = 1.0) -> None:
        super().__init__()
        if ctcvr_weight < 0:
            raise ValueError(f"ESMMTask: ctcvr_weight must be >= 0, got {ctcvr_weight}")
        self.ctcvr_weight = float(ctcvr_weight)

    def forward(self, model, batch, generator=None):
        ctr_logit, cvr_logit = model(batch.features, batch.ids or None)
        return esmm_loss(ctr_logit, cvr_logit, batch.click, batch.conversion, self.ctcvr_weight)
