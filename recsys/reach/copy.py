"""Personalised message copy: Chinese templates filled from profile tags and entity attributes.

Each trigger kind has template variants (``reach.yaml``: ``copy.templates``) and one fallback
that names only fields every message has. ``CopyWriter.write`` picks the variant by a hash of
the viewer (``recsys.experiments.assignment.bucket``: the copy variant is an experiment factor,
stable per viewer), fills it, and falls back when a field is missing. A generator model plugs in
as ``generator(kind, variant, fields) -> str | None``: its text is used when it is a non-empty
string of at most ``max_chars`` characters without braces; otherwise (None, an error, a bad
string) the template is. Every fallback is counted by its cause (``faults``), none is silent,
and no message leaves with an unfilled field.

Fields: ``streamer`` (display name, or "主播<id>"), ``category`` (the streamer's category, in
Chinese), ``product`` (brand and category of the product), ``price``, ``start_time`` (local
HH:MM of the moment), ``n_items`` (carted items merged into the message), ``interest`` (the
viewer's top interest tag), ``price_phrase`` (a deal phrase for price-sensitive viewers),
``coupon_value`` and ``expiry_time`` (coupon triggers).
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from recsys.experiments.assignment import bucket

Generator = Callable[[str, int, Mapping[str, str]], "str | None"]
FIELDS = ("streamer", "category", "product", "price", "start_time", "n_items", "interest",
          "price_phrase", "coupon_value", "expiry_time")  # fmt: skip
ALWAYS = ("streamer", "start_time")  # what a fallback may name
SAFE = {"followed_streamer_live": "你关注的主播开播啦，快来看看吧",
        "carted_item_featured": "你加购的宝贝即将在直播间讲解，快来看看吧",
        "coupon_expiring": "你有一张优惠券即将过期，别错过",
        "lapsing_buyer": "好久不见，来直播间看看新品吧"}  # fmt: skip


def _names(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


@dataclass(frozen=True)
class CopyTemplates:
    templates: dict[str, tuple[str, ...]]  # kind -> variants
    fallback: dict[str, str]  # kind -> a template naming only ``ALWAYS`` fields
    max_chars: int = 80
    salt: str = "reach-copy"

    def __post_init__(self) -> None:
        for kind, variants in self.templates.items():
            if not variants:
                raise ValueError(f"copy.templates.{kind}: no variants")
            for v in variants:
                unknown = _names(v) - set(FIELDS)
                if unknown:
                    raise ValueError(f"copy.templates.{kind}: {v!r} names unknown fields "
                                     f"{sorted(unknown)}; known: {FIELDS}")  # fmt: skip
        for kind, text in self.fallback.items():
            if not _names(text) <= set(ALWAYS):
                raise ValueError(f"copy.fallback.{kind}: {text!r} may name only {ALWAYS}")

    def variants(self, kind: str) -> int:
        return len(self.templates.get(kind, ("",)))


@dataclass
class CopyWriter:
    templates: CopyTemplates
    generator: Generator | None = None
    faults: Counter = field(default_factory=Counter)

    def variant(self, user_id: np.ndarray, kind: np.ndarray) -> np.ndarray:
        """Each message's copy variant: a hash of the viewer, within its kind's variants."""
        u = bucket(np.asarray(user_id, dtype=np.int64), self.templates.salt, "copy")
        n = np.array([self.templates.variants(k) for k in kind], dtype=np.int64)
        return np.minimum((u * n).astype(np.int64), n - 1)

    def write(self, kind: str, variant: int, fields: Mapping[str, str]) -> str:
        if self.generator is not None:
            text = self._generated(kind, variant, fields)
            if text is not None:
                return text
        variants = self.templates.templates.get(kind)
        if not variants:
            self.faults[f"no template for {kind}"] += 1
            return self._fallback(kind, fields)
        template = variants[variant % len(variants)]
        missing = [n for n in _names(template) if not fields.get(n)]
        if missing:
            self.faults[f"template field missing: {missing[0]}"] += 1
            return self._fallback(kind, fields)
        return self._fit(template.format_map(fields), kind, fields)

    def _generated(self, kind: str, variant: int, fields: Mapping[str, str]) -> str | None:
        try:
            text = self.generator(kind, variant, fields)
        except Exception as err:  # a generator model may fail in any way; the template stands in
            self.faults[f"generator error: {type(err).__name__}"] += 1
            return None
        if not isinstance(text, str) or not text.strip():
            self.faults["generator gave no text"] += 1
            return None
        if len(text) > self.templates.max_chars or "{" in text or "}" in text:
            self.faults["generator text refused (length or braces)"] += 1
            return None
        return text.strip()

    def _fallback(self, kind: str, fields: Mapping[str, str]) -> str:
        template = self.templates.fallback.get(kind, SAFE.get(kind, "来直播间看看吧"))
        if any(not fields.get(n) for n in _names(template)):
            self.faults["fallback field missing"] += 1
            template = SAFE.get(kind, "来直播间看看吧")
        return self._fit(template.format_map(fields), kind, fields)

    def _fit(self, text: str, kind: str, fields: Mapping[str, str]) -> str:
        if len(text) <= self.templates.max_chars:
            return text
        self.faults["text over max_chars"] += 1
        return text[: self.templates.max_chars - 1] + "…"
