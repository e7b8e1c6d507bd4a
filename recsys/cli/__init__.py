"""The Hydra apps. Their logs speak of the run: two libraries announce at INFO level how they
loaded themselves (FBGEMM's kernels through the root logger, FAISS's instruction sets), and
torch warns torchrec's authors, on every run, about an FX tracing helper torchrec calls; none of
it says anything to a person reading a run, so those lines are dropped here. Other warnings
stay."""

from __future__ import annotations

import logging


class _LoadNotices(logging.Filter):
    """Drops FBGEMM's INFO lines about loading its kernel libraries (logged on the root logger,
    where Hydra's log configuration keeps logger filters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        noisy = record.levelno <= logging.INFO and "fbgemm_gpu" in record.pathname
        return not noisy


logging.getLogger().addFilter(_LoadNotices())
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
