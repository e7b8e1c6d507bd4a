"""The frozen configuration of a synthetic world and its named size presets."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, fields, replace

from recsys.simulation.catalog import CATEGORIES, CATEGORY_NAMES

SECONDS_PER_DAY = 86_400
# Chunks start at 05:00 local time: every live session starts between 08:00 and 23:30 and
# lasts at most 4 h, so each session lies inside the chunk of the day it starts.
CHUNK_START_HOUR = 5


@dataclass(frozen=True)
class SimConfig:
    """Everything that determines a synthetic world; same config and seed, same bytes.

    Sizes (``n_*``) set the population; the rates set how busy it is (events scale roughly with
    ``n_users * n_days * (browse_rate + loyalty_rate)``). ``pseudonym_key`` only makes user ids
    look like production pseudonyms: it is a fixed public value, not a secret.
    """

    preset: str = "custom"
    seed: int = 0
    n_users: int = 400
    n_streamers: int = 20
    n_products: int = 200
    n_days: int = 3
    start_date: str = "2024-06-03"  # local calendar day of chunk 0 (a Monday)
    utc_offset_hours: int = 8  # local time of the platform (China Standard Time)
    categories: tuple[str, ...] = CATEGORY_NAMES
    interest_concentration: float = 0.8  # Dirichlet total mass; small = few clear interests
    explore: float = 0.08  # share of browsing intents that ignore the interest mix
    browse_rate: float = 1.5  # mean browsing intents per user-day (before room appeal)
    loyalty_rate: float = 1.0  # visit intensity of a fully trusted streamer's live session
    return_rate: float = 0.15  # chance (scaled by interest and trust) of re-entering a room
    weekend_boost: float = 1.3  # activity multiplier on Saturdays and Sundays
    regular_slots: tuple[int, int] = (2, 6)  # min, max regular weekly sessions per streamer
    extra_session_rate: float = 0.1  # chance of an irregular session on a streamer's off day
    catalogue_size: int = 30  # products each streamer sells (drawn with repeats)
    segment_minutes: float = 6.0  # mean time a product is presented
    coupon_rate: float = 0.35  # share of showcase segments with a coupon drop
    coupon_values: tuple[float, ...] = (5.0, 10.0, 20.0, 50.0)
    pseudonym_key: str = "recsys-synthetic-world"
    # Newcomers: this share of users signs up during the run, on a day drawn uniformly from
    # 1 .. n_days - 1, and does nothing before it; this share of streamers goes live for the
    # first time on such a day, bringing their catalogue with them. 0: everyone from day 0.
    new_user_share: float = 0.0
    new_streamer_share: float = 0.0

    def __post_init__(self) -> None:
        # Lists from YAML or JSON become tuples, so configs compare and hash like presets.
        for name in ("categories", "coupon_values", "regular_slots"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("n_users", "n_streamers", "n_products", "n_days", "catalogue_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"SimConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_products < min(self.n_streamers, len(self.categories)):
            raise ValueError(
                "SimConfig.n_products must cover every streamer category: need at least "
                f"min(n_streamers, len(categories)) = {min(self.n_streamers, len(self.categories))}"
            )
        unknown = [c for c in self.categories if c not in CATEGORIES]
        if unknown or len(set(self.categories)) != len(self.categories) or not self.categories:
            raise ValueError(
                f"SimConfig.categories must be distinct names from {CATEGORY_NAMES}, "
                f"got {self.categories}"
            )
        if not self.coupon_values or min(self.coupon_values) <= 0:
            raise ValueError(f"SimConfig.coupon_values must be positive, got {self.coupon_values}")
        lo, hi = self.regular_slots
        if not 0 <= lo <= hi <= 7:
            raise ValueError(f"SimConfig.regular_slots must be 0 <= min <= max <= 7, got {lo, hi}")
        for name in ("explore", "return_rate", "extra_session_rate", "coupon_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SimConfig.{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("new_user_share", "new_streamer_share"):
            share = getattr(self, name)
            if not 0.0 <= share < 1.0 or (share > 0 and self.n_days < 2):
                raise ValueError(f"SimConfig.{name} must lie in [0, 1), with n_days >= 2 when "
                                 f"above 0; got {share} over {self.n_days} days")  # fmt: skip
        for name in ("browse_rate", "loyalty_rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"SimConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("interest_concentration", "weekend_boost", "segment_minutes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SimConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.pseudonym_key:
            raise ValueError("SimConfig.pseudonym_key must be a non-empty string")
        self.start_ts  # noqa: B018 - parse the date now so a bad one fails here

    @classmethod
    def from_preset(cls, name: str, **overrides) -> SimConfig:
        """A preset with some fields replaced, e.g. ``from_preset("tiny", seed=3)``."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        known = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise TypeError(f"SimConfig has no fields {bad}")
        return replace(PRESETS[name], **overrides)

    @property
    def start_ts(self) -> int:
        """Unix time of local midnight on ``start_date``."""
        tz = dt.timezone(dt.timedelta(hours=self.utc_offset_hours))
        try:
            day = dt.date.fromisoformat(self.start_date)
        except ValueError as err:
            raise ValueError(f"SimConfig.start_date {self.start_date!r}: {err}") from None
        return int(dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())

    def chunk_window(self, day: int) -> tuple[int, int]:
        """[start, end) Unix seconds of chunk ``day``: 05:00 local to 05:00 the next day."""
        start = self.start_ts + day * SECONDS_PER_DAY + CHUNK_START_HOUR * 3600
        return start, start + SECONDS_PER_DAY

    def weekday(self, day: int) -> int:
        """0 = Monday."""
        return (dt.date.fromisoformat(self.start_date).weekday() + day) % 7

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


PRESETS: dict[str, SimConfig] = {
    "tiny": SimConfig(preset="tiny", n_users=700, n_streamers=24, n_products=240, n_days=3),
    "small": SimConfig(preset="small", n_users=4_500, n_streamers=150, n_products=3_000, n_days=21),
    "medium": SimConfig(
        preset="medium", n_users=24_000, n_streamers=800, n_products=16_000, n_days=28
    ),
    "large": SimConfig(
        preset="large", n_users=80_000, n_streamers=2_500, n_products=50_000, n_days=42
    ),
    # A week over a 100k-product catalogue, for retrieval and serving at catalogue scale.
    "catalog100k": SimConfig(
        preset="catalog100k",
        n_users=24_000,
        n_streamers=4_000,
        n_products=100_000,
        n_days=7,
        catalogue_size=40,
    ),
}
