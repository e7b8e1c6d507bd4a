"""The frozen parameters of profile features, read from ``conf/profiling/features.yaml``.

Tag rules have their own file (``tags.yaml``, see ``recsys.profiling.tags``); this one says
how events turn into features: decay, shrinkage, signal weights, day parts and comment topics.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

CONF_DIR = Path(__file__).resolve().parent.parent / "conf" / "profiling"
FEATURES_YAML = CONF_DIR / "features.yaml"
TAGS_YAML = CONF_DIR / "tags.yaml"


@dataclass(frozen=True)
class Topic:
    """A comment topic: a comment belongs to it when it contains one of the keywords."""

    name: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class LoyaltyWeights:
    """Linear score whose sigmoid is a user's loyalty to one streamer."""

    intercept: float = -13.0
    log_visits: float = 1.5
    visit_share: float = 20.0
    log_lift: float = 1.5
    log_dwell_minutes: float = 1.0
    follows: float = 1.0
    log_purchases: float = 0.5


@dataclass(frozen=True)
class SensitivityWeights:
    """Weights of the three shrunk rates whose z-scores make price sensitivity."""

    coupon_claim_rate: float = 1.0
    coupon_purchase_share: float = 0.5
    price_question_share: float = 1.0
    price_topic: str = "price"


@dataclass(frozen=True)
class ProfileConfig:
    half_life_days: float = 30.0
    utc_offset_hours: int = 8
    shrinkage: float = 10.0
    interest_visit_weight: float = 1.0
    interest_click_weight: float = 0.5
    sensitivity: SensitivityWeights = field(default_factory=SensitivityWeights)
    brand_click_weight: float = 0.25
    power_tiers: tuple[float, float] = (0.3, 0.7)
    loyalty: LoyaltyWeights = field(default_factory=LoyaltyWeights)
    trusted_min_loyalty: float = 0.05
    trusted_min_visits: float = 2.0
    dayparts: tuple[tuple[str, int, int], ...] = (
        ("morning", 5, 11),
        ("midday", 11, 14),
        ("afternoon", 14, 18),
        ("evening", 18, 22),
        ("night", 22, 5),
    )
    topics: tuple[Topic, ...] = ()

    def __post_init__(self) -> None:
        if self.half_life_days <= 0:
            raise ValueError(f"ProfileConfig.half_life_days must be > 0, got {self.half_life_days}")
        if self.shrinkage < 0:
            raise ValueError(f"ProfileConfig.shrinkage must be >= 0, got {self.shrinkage}")
        lo, hi = self.power_tiers
        if lo > hi:
            raise ValueError(
                f"ProfileConfig.power_tiers must be increasing, got {self.power_tiers}"
            )
        for name, start, end in self.dayparts:
            if not (0 <= start < 24 and 0 <= end < 24 and start != end):
                raise ValueError(f"ProfileConfig.dayparts {name!r}: bad hours [{start}, {end})")
        names = [t.name for t in self.topics]
        if len(set(names)) != len(names):
            raise ValueError(f"ProfileConfig.topics has duplicate names: {names}")
        if self.topics and self.sensitivity.price_topic not in names:
            raise ValueError(
                f"ProfileConfig.sensitivity.price_topic {self.sensitivity.price_topic!r} "
                f"is not one of the topics {names}"
            )

    @property
    def half_life_s(self) -> float:
        return self.half_life_days * 86_400.0

    @property
    def topic_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.topics)

    @classmethod
    def from_yaml(cls, path: str | Path = FEATURES_YAML) -> ProfileConfig:
        """Read a features file; unknown keys are errors naming the file."""
        path = Path(path)
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        try:
            return cls(**_parse(raw))
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"{path}: {err}") from None

    @classmethod
    def default(cls) -> ProfileConfig:
        return cls.from_yaml(FEATURES_YAML)


def _nested(kind: type, raw: dict[str, Any], where: str):
    known = {f.name for f in fields(kind)}
    bad = sorted(set(raw) - known)
    if bad:
        raise KeyError(f"{where}: unknown keys {bad}")
    return kind(**raw)


def _parse(raw: dict[str, Any]) -> dict[str, Any]:
    raw = dict(raw)
    out: dict[str, Any] = {}
    interest = raw.pop("interest", {}) or {}
    if "visit_weight" in interest:
        out["interest_visit_weight"] = float(interest.pop("visit_weight"))
    if "click_weight" in interest:
        out["interest_click_weight"] = float(interest.pop("click_weight"))
    if interest:
        raise KeyError(f"interest: unknown keys {sorted(interest)}")
    if "price_sensitivity" in raw:
        out["sensitivity"] = _nested(
            SensitivityWeights, raw.pop("price_sensitivity"), "price_sensitivity"
        )
    if "loyalty" in raw:
        out["loyalty"] = _nested(LoyaltyWeights, raw.pop("loyalty"), "loyalty")
    if "power_tiers" in raw:
        out["power_tiers"] = tuple(float(x) for x in raw.pop("power_tiers"))
    if "dayparts" in raw:
        out["dayparts"] = tuple(
            (str(k), int(v[0]), int(v[1])) for k, v in raw.pop("dayparts").items()
        )
    if "topics" in raw:
        out["topics"] = tuple(
            Topic(str(name), tuple(str(k) for k in keywords))
            for name, keywords in raw.pop("topics").items()
        )
    known = {f.name for f in fields(ProfileConfig)}
    bad = sorted(set(raw) - known)
    if bad:
        raise KeyError(f"unknown keys {bad}")
    return out | raw
