"""Forgetting users in a model checkpoint (``best.pt``, ``checkpoint.pt``, a ranker's ``.pt``).

A checkpoint of the project holds its user vocabulary (``vocabularies.user``: ids in index
order, index = position + 2, 0 and 1 being padding and unknown) and the model's per-user
tensors: the user embedding rows and, in a resumable ``checkpoint.pt``, the optimiser's moments
of those rows. Forgetting removes the users' ids from the vocabulary and their rows from every
per-user tensor (later rows move up, as a vocabulary built from the tables without them would
place them), and lowers ``model_config.n_users``: the model loads as before, its vocabulary
equals the erased world's, and a forgotten user now reads the unknown row like any stranger.
A later training run builds its vocabulary from the erased tables, so they are excluded.

What the shared weights learned from them (towers, ranker) stays until a retrain;
``recsys.erasure.membership`` measures how much of it an attacker can still see.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from recsys.erasure.walk import scrub

OFFSET = 2  # index of vocabulary position 0 (0: padding, 1: unknown)


def _user_rows(state: dict, n_rows: int) -> list[str]:
    """Names of the per-user tensors of a model state dict."""
    return [k for k, v in state.items()
            if torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == n_rows
            and "user" in k.lower()]  # fmt: skip


def _drop_rows(t: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    keep = np.ones(t.shape[0], dtype=bool)
    keep[rows] = False
    return t[torch.from_numpy(keep)].clone()


def _optimizer(ck: dict, shapes: set[tuple], n_tensors: int, rows: np.ndarray) -> None:
    """The moments of the user rows go with them (the parameters of the user tensors' shapes;
    refused when other parameters share that shape and the rows cannot be told apart)."""
    opt = ck.get("optimizer")
    if not isinstance(opt, dict) or "state" not in opt:
        return
    matched = [
        st
        for st in opt["state"].values()
        if any(torch.is_tensor(v) and tuple(v.shape) in shapes for v in st.values())
    ]
    if len(matched) > n_tensors:
        raise ValueError(
            f"checkpoint optimizer: {len(matched)} parameters have the user "
            f"table's shape {sorted(shapes)}; cannot tell its rows apart"
        )
    for st in matched:
        for name, v in list(st.items()):
            if torch.is_tensor(v) and tuple(v.shape) in shapes:
                st[name] = _drop_rows(v, rows)


def forget_in_checkpoint(ck: dict, ids: np.ndarray) -> int:
    """Remove the users ``ids`` from a loaded checkpoint dict; returns how many were in it."""
    vocab = (ck.get("vocabularies") or {}).get("user")
    if vocab is None:
        return scrub(ck, ids)[1]
    vocab = np.asarray(vocab, dtype=np.int64)
    pos = np.flatnonzero(np.isin(vocab, ids))
    if not len(pos):
        return 0
    rows, n_rows = pos + OFFSET, len(vocab) + OFFSET
    state = ck.get("model", {})
    names = _user_rows(state, n_rows)
    if not names:
        raise ValueError(f"checkpoint: no user tensor of {n_rows} rows beside its vocabulary")
    shapes = {tuple(state[k].shape) for k in names}
    for k in names:
        state[k] = _drop_rows(state[k], rows)
    _optimizer(ck, shapes, len(names), rows)
    ck["vocabularies"]["user"] = np.delete(vocab, pos)
    config = ck.get("model_config")
    if isinstance(config, dict) and "n_users" in config:
        config["n_users"] = int(config["n_users"]) - len(pos)
    return len(pos)


def erase_checkpoint(path: Path, ids: np.ndarray, replace_atomically: Callable) -> int:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    removed = forget_in_checkpoint(ck, ids) if isinstance(ck, dict) else 0
    if removed:
        replace_atomically(path, lambda tmp: torch.save(ck, tmp))
    return removed
