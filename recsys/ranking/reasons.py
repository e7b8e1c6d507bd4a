"""Reason codes a UI can show next to a recommendation, from its feature values.

Each rule in ``conf/ranker/reasons.yaml`` names a stable code, a human text and the features
it reads with their minimum values; the rule fires when every listed feature reaches its
minimum. An item carries the codes of the rules that fire, in the file's order (most telling
first), at most ``max_reasons`` of them. Codes are API: a UI keys translations and icons on
them, so the built-in ones below never change meaning; a new rule in YAML may add a new code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import compress
from pathlib import Path

import numpy as np
import yaml

from recsys.ranking.candidate_features import FeatureMatrix

REASONS_YAML = Path(__file__).resolve().parent.parent / "conf" / "ranker" / "reasons.yaml"

TRUSTED_STREAMER_PRESENTING_NOW = "trusted_streamer_presenting_now"
FOLLOWED_STREAMER_LIVE = "followed_streamer_live"
IN_CART = "in_cart"
COUPON_AVAILABLE = "coupon_available"
COUPON_HELD = "coupon_held"
MATCHES_CURRENT_CATEGORY = "matches_current_category"
PRICE_FITS = "price_fits"
IN_CURRENT_ROOM = "in_current_room"
POPULAR_IN_ROOM_NOW = "popular_in_room_now"
REASON_CODES = (
    TRUSTED_STREAMER_PRESENTING_NOW, FOLLOWED_STREAMER_LIVE, IN_CART, COUPON_AVAILABLE,
    COUPON_HELD, MATCHES_CURRENT_CATEGORY, PRICE_FITS, IN_CURRENT_ROOM, POPULAR_IN_ROOM_NOW,
)  # fmt: skip
_CODE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class ReasonRule:
    code: str
    text: str
    when: tuple[tuple[str, float], ...]  # (feature, minimum value), all must hold


@dataclass(frozen=True)
class ReasonRules:
    rules: tuple[ReasonRule, ...]
    max_reasons: int = 3

    def __post_init__(self) -> None:
        codes = [r.code for r in self.rules]
        if len(set(codes)) != len(codes):
            raise ValueError(f"reason rules: a code repeats in {codes}")
        if self.max_reasons < 1:
            raise ValueError(f"reason rules: max_reasons must be >= 1, got {self.max_reasons}")

    @classmethod
    def from_yaml(cls, path: str | Path = REASONS_YAML) -> ReasonRules:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict, source: str = "reason rules") -> ReasonRules:
        rules = []
        for i, rule in enumerate(raw.get("reasons", [])):
            missing = [k for k in ("code", "text", "when") if k not in rule]
            if missing:
                raise ValueError(f"{source}: reason {i} lacks {missing}")
            if not _CODE.match(str(rule["code"])) or not rule["when"]:
                raise ValueError(f"{source}: reason {i} needs a snake_case code and conditions")
            when = tuple((str(f), float(v)) for f, v in dict(rule["when"]).items())
            rules.append(ReasonRule(str(rule["code"]), str(rule["text"]), when))
        return cls(tuple(rules), int(raw.get("max_reasons", 3)))

    def text(self, code: str) -> str:
        for rule in self.rules:
            if rule.code == code:
                return rule.text
        raise KeyError(f"no reason {code!r}")

    def fired(self, features: FeatureMatrix) -> np.ndarray:
        """(n, n_rules) bool: which rule fires for which row."""
        out = np.ones((len(features), len(self.rules)), dtype=bool)
        for j, rule in enumerate(self.rules):
            for name, minimum in rule.when:
                if name not in features.names:
                    raise ValueError(f"reason {rule.code!r} reads unknown feature {name!r}")
                out[:, j] &= features.column(name) >= minimum
        return out

    def codes(self, features: FeatureMatrix) -> list[tuple[str, ...]]:
        """The reason codes of every row, in rule order, at most ``max_reasons`` each."""
        names, most = [r.code for r in self.rules], self.max_reasons
        # Python lists, not a numpy call per row: a request asks for a handful of rows.
        return [tuple(compress(names, row))[:most] for row in self.fired(features).tolist()]
