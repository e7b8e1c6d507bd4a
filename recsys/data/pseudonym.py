"""Keyed pseudonymisation of user ids at ingestion.

A raw user id is replaced by the first 63 bits of BLAKE2b(key, id): stable for a given key, so
the same person maps to the same pseudonym across batches, and not reversible without the key.
Derived artifacts (profiles, vocabularies, checkpoints) only ever see pseudonyms.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

KEY_ENV = "RECSYS_PSEUDONYM_KEY"


def resolve_key(key: str | None) -> bytes:
    """The key from the argument, else from ``RECSYS_PSEUDONYM_KEY``; one of them is required."""
    key = key if key else os.environ.get(KEY_ENV)
    if not key:
        raise ValueError(f"no pseudonymisation key: pass one in config or set {KEY_ENV}")
    return key.encode("utf-8")[:64]


def pseudonymise(raw_ids, key: str | None) -> np.ndarray:
    """Map raw ids (ints or strings) to non-negative int64 pseudonyms."""
    k = resolve_key(key)
    raw = np.asarray(raw_ids)
    uniq, inverse = np.unique(raw, return_inverse=True)
    out = np.empty(len(uniq), dtype=np.int64)
    for i, value in enumerate(uniq.tolist()):
        digest = hashlib.blake2b(str(value).encode("utf-8"), digest_size=8, key=k).digest()
        out[i] = int.from_bytes(digest, "little") >> 1
    if len(np.unique(out)) != len(out):
        raise RuntimeError("pseudonym collision; use a different key")
    return out[inverse].reshape(raw.shape)
