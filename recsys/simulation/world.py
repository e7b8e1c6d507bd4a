"""Latent entities of the synthetic world: users, streamers, products and trust.

Everything here is drawn once per world from the ``world`` seed stream; the live schedule
(``schedule.py``) and per-day behaviour (``visits.py``, ``behaviour.py``) read it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from recsys.data import pseudonym
from recsys.simulation import catalog as cat
from recsys.simulation.config import SECONDS_PER_DAY, SimConfig

POWER_MEDIAN = 150.0  # yuan a typical user spends comfortably on one item
POWER_SIGMA = 0.7
ACTIVITY_SIGMA = 0.7
TRUST_FROM_INTEREST = 0.85  # the rest of trusted streamers come from any category
FOLLOWERS_BASE = 50_000  # platform-wide followers of a KOL-strength-1 streamer
ARRIVALS = 4  # seed stream (ARRIVALS,) of newcomers' first days: apart from the runner's streams


@dataclass(frozen=True)
class Users:
    pseudonym: np.ndarray  # (U,) int64 public user_id
    age: np.ndarray  # (U,) index into AGE_BANDS
    gender: np.ndarray  # (U,) index into GENDERS
    region: np.ndarray  # (U,) index into REGIONS
    signup_ts: np.ndarray  # (U,) int64
    interest: np.ndarray  # (U, C) rows sum to 1
    power: np.ndarray  # (U,) purchasing power, yuan
    sensitivity: np.ndarray  # (U,) price sensitivity in [0, 1]
    domestic: np.ndarray  # (U,) probability of preferring a domestic brand
    body: np.ndarray  # (U,) index into BODY_TYPES
    skin: np.ndarray  # (U,) index into SKIN_TYPES
    activity: np.ndarray  # (U,) visit-rate multiplier, mean 1
    hours: np.ndarray  # (U, 24) preferred local hours, rows sum to 1
    hour_style: np.ndarray  # (U,) dominant index into HOUR_STYLES

    def __len__(self) -> int:
        return len(self.pseudonym)


@dataclass(frozen=True)
class Streamers:
    category: np.ndarray  # (S,) category index
    kol: np.ndarray  # (S,) KOL strength, lognormal, drives popularity
    tier: np.ndarray  # (S,) price tier index
    followers: np.ndarray  # (S,) int64
    catalogue: np.ndarray  # (S, K) product indices the streamer presents


@dataclass(frozen=True)
class Products:
    category: np.ndarray  # (P,) category index
    tier: np.ndarray  # (P,)
    imported: np.ndarray  # (P,) bool
    brand: np.ndarray  # (P,) object
    price: np.ndarray  # (P,) yuan
    attr: np.ndarray  # (P,) attribute value the product suits (0 = none) of its category's kind
    keywords: np.ndarray  # (P,) object, space-separated tokens


@dataclass(frozen=True)
class Trust:
    """Sparse (user, streamer, trust) triples, sorted by ``user * n_streamers + streamer``."""

    user: np.ndarray
    streamer: np.ndarray
    value: np.ndarray
    n_streamers: int

    def lookup(self, user: np.ndarray, streamer: np.ndarray) -> np.ndarray:
        """Trust of each (user, streamer) pair, 0 where the user does not trust the streamer."""
        keys = self.user * self.n_streamers + self.streamer
        query = user * self.n_streamers + streamer
        pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
        if len(keys) == 0:
            return np.zeros(len(query))
        return np.where(keys[pos] == query, self.value[pos], 0.0)


@dataclass(frozen=True)
class Arrivals:
    """The first day of each user and streamer on the platform (0: there from the start)."""

    user_day: np.ndarray  # (U,) int64
    streamer_day: np.ndarray  # (S,) int64

    @classmethod
    def none(cls, n_users: int, n_streamers: int) -> Arrivals:
        return cls(np.zeros(n_users, dtype=np.int64), np.zeros(n_streamers, dtype=np.int64))


@dataclass(frozen=True)
class World:
    config: SimConfig
    users: Users
    streamers: Streamers
    products: Products
    trust: Trust
    arrivals: Arrivals

    def on_day(self, day: int) -> World:
        """The world as day ``day`` sees it: users who have not signed up yet do nothing."""
        waiting = self.arrivals.user_day > day
        if not waiting.any():
            return self
        users = replace(self.users, activity=np.where(waiting, 0.0, self.users.activity))
        return replace(self, users=users)

    @property
    def attr_kind(self) -> np.ndarray:
        """(C,) attribute kind per category: 0 none, 1 body, 2 skin."""
        kinds = [cat.CATEGORIES[c].attribute for c in self.config.categories]
        return np.array([{None: 0, "body": 1, "skin": 2}[k] for k in kinds], dtype=np.int64)

    def user_attr(self, user: np.ndarray, category: np.ndarray) -> np.ndarray:
        """The user's value of the attribute the category addresses (0 when none)."""
        kind = self.attr_kind[category]
        return np.where(
            kind == 1, self.users.body[user], np.where(kind == 2, self.users.skin[user], 0)
        )


def build_world(config: SimConfig, rng: np.random.Generator) -> World:
    users = _users(config, rng)
    streamer_category = _streamer_categories(config, users.interest, rng)
    products = _products(config, streamer_category, rng)
    streamers = _streamers(config, streamer_category, products, rng)
    trust = _trust(config, users.interest, streamers, rng)
    arrivals = _arrivals(config)
    if arrivals.user_day.any():
        signup = config.chunk_window(0)[0] + arrivals.user_day * SECONDS_PER_DAY
        joined = np.where(arrivals.user_day > 0, signup, users.signup_ts)
        users = replace(users, signup_ts=joined.astype(np.int64))
    return World(config, users, streamers, products, trust, arrivals)


def _arrivals(config: SimConfig) -> Arrivals:
    """Newcomers' first days, from a seed stream of their own: a world without newcomers
    draws nothing here, so its every other draw is what it always was."""
    if config.new_user_share == 0 and config.new_streamer_share == 0:
        return Arrivals.none(config.n_users, config.n_streamers)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(ARRIVALS,)))

    def days(n: int, share: float) -> np.ndarray:
        late = rng.random(n) < share
        return np.where(late, rng.integers(1, config.n_days, n), 0).astype(np.int64)

    return Arrivals(days(config.n_users, config.new_user_share),
                    days(config.n_streamers, config.new_streamer_share))  # fmt: skip


def _choice(rng: np.random.Generator, p: tuple[float, ...], n: int) -> np.ndarray:
    return rng.choice(len(p), size=n, p=np.asarray(p) / np.sum(p))


def _sample_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One column index per row of a non-negative (N, K) weight matrix."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cdf[:, -1]
    return np.minimum((cdf <= u[:, None]).sum(axis=1), weights.shape[1] - 1)


def _users(config: SimConfig, rng: np.random.Generator) -> Users:
    n = config.n_users
    age, gender = _choice(rng, cat.AGE_P, n), _choice(rng, cat.GENDER_P, n)
    region = _choice(rng, cat.REGION_P, n)
    cats = [cat.CATEGORIES[c] for c in config.categories]
    g_aff = np.array([c.gender_affinity for c in cats]).T  # (2, C)
    a_aff = np.array([c.age_affinity for c in cats]).T  # (4, C)
    prior = g_aff[gender] * a_aff[age] * cat.region_affinity(config.categories)[region]  # (U, C)
    alpha = config.interest_concentration * prior / prior.sum(axis=1, keepdims=True)
    interest = rng.gamma(alpha) + 1e-9  # the floor keeps rows of tiny draws normalisable
    interest /= interest.sum(axis=1, keepdims=True)
    z_power = rng.standard_normal(n)
    power_mult = np.asarray(cat.AGE_POWER)[age] * np.asarray(cat.REGION_POWER)[region]
    power = POWER_MEDIAN * power_mult * np.exp(POWER_SIGMA * z_power)
    # Richer users care less about deals: sensitivity falls with the power draw.
    b = rng.beta(1.2, 1.2, n)
    sensitivity = 1.0 / (1.0 + np.exp(-(np.log(b / (1.0 - b)) - 0.5 * z_power)))
    dom = rng.beta(3.0, 2.0, n) + np.asarray(cat.REGION_DOMESTIC)[region]
    mix = rng.dirichlet(cat.HOUR_STYLE_ALPHA, n)  # (U, n_styles)
    hours = mix @ cat.hour_profile_components() + 0.01
    hours /= hours.sum(axis=1, keepdims=True)
    activity = np.exp(ACTIVITY_SIGMA * rng.standard_normal(n) - ACTIVITY_SIGMA**2 / 2)
    signup = config.start_ts - rng.integers(1, 3 * 365, n) * SECONDS_PER_DAY
    return Users(
        pseudonym=pseudonym.pseudonymise(np.arange(n), config.pseudonym_key),
        age=age,
        gender=gender,
        region=region,
        signup_ts=signup.astype(np.int64),
        interest=interest,
        power=power,
        sensitivity=sensitivity,
        domestic=np.clip(dom, 0.0, 1.0),
        body=_choice(rng, cat.BODY_P, n),
        skin=_choice(rng, cat.SKIN_P, n),
        activity=activity,
        hours=hours,
        hour_style=mix.argmax(axis=1),
    )


def _streamer_categories(config: SimConfig, interest: np.ndarray, rng) -> np.ndarray:
    """Every category gets a streamer first (when there are enough), the rest follow demand."""
    n, c = config.n_streamers, len(config.categories)
    head = rng.permutation(c)[: min(n, c)]
    demand = interest.mean(axis=0)
    tail = rng.choice(c, size=n - len(head), p=demand / demand.sum())
    return np.concatenate([head, tail]).astype(np.int64)


def _products(config: SimConfig, streamer_category: np.ndarray, rng) -> Products:
    n, n_cat = config.n_products, len(config.categories)
    present = np.unique(streamer_category)
    share = np.bincount(streamer_category, minlength=n_cat) + 0.5
    head = rng.permutation(present)[: min(n, len(present))]
    category = np.concatenate([head, rng.choice(n_cat, size=n - len(head), p=share / share.sum())])
    tier = _choice(rng, cat.TIER_P, n)
    imported = rng.random(n) < np.asarray(cat.TIER_IMPORTED)[tier]
    medians = np.array([cat.CATEGORIES[c].median_price for c in config.categories])
    raw = (
        medians[category] * np.asarray(cat.TIER_PRICE)[tier] * np.exp(0.35 * rng.standard_normal(n))
    )
    price = np.maximum(np.round(raw) - 0.1, 4.9)
    brand = _brands(config, category, imported, rng)
    attr = _product_attributes(config, category, rng)
    keywords = _keywords(config, category, tier, imported, attr, rng)
    return Products(category, tier, imported, brand, price, attr, keywords)


def _brands(config: SimConfig, category, imported, rng) -> np.ndarray:
    """Each category has 6 domestic and 3 imported brands; products pick one uniformly."""
    n_cat = len(config.categories)
    domestic = np.array(
        [cat.brand_names(rng, 6, imported=False) for _ in range(n_cat)], dtype=object
    )
    foreign = np.array([cat.brand_names(rng, 3, imported=True) for _ in range(n_cat)], dtype=object)
    pick = rng.integers(0, 6, len(category))
    return np.where(imported, foreign[category, pick % 3], domestic[category, pick])


def _product_attributes(config: SimConfig, category: np.ndarray, rng) -> np.ndarray:
    """About a third of body/skin-category products are made for one non-neutral value."""
    kinds = [cat.CATEGORIES[c].attribute for c in config.categories]
    n_values = np.array([len(cat.ATTRIBUTE_VALUES[k]) if k else 1 for k in kinds])[category]
    tagged = (n_values > 1) & (rng.random(len(category)) < 0.35)
    value = 1 + np.floor(rng.random(len(category)) * (n_values - 1)).astype(np.int64)
    return np.where(tagged, value, 0)


def _keywords(config: SimConfig, category, tier, imported, attr, rng) -> np.ndarray:
    """2-4 category tokens, then origin (国货/进口), tier word and attribute token if any."""
    pools = [cat.CATEGORIES[c].keywords for c in config.categories]
    kinds = [cat.CATEGORIES[c].attribute for c in config.categories]
    order = np.argsort(rng.random((len(category), 10)), axis=1)[:, :4]  # distinct token picks
    count = rng.integers(2, 5, len(category))
    out = np.empty(len(category), dtype=object)
    for i, (c, t, imp, a) in enumerate(zip(category, tier, imported, attr, strict=True)):
        tokens = [pools[c][k] for k in order[i, : count[i]]]
        tokens += ["进口" if imp else "国货", cat.PRICE_TIERS[t]]
        if a:
            tokens.append(cat.ATTRIBUTE_VALUES[kinds[c]][a])
        out[i] = " ".join(tokens)
    return out


def _streamers(config: SimConfig, category, products: Products, rng) -> Streamers:
    n = config.n_streamers
    kol = np.exp(rng.standard_normal(n))
    followers = FOLLOWERS_BASE * kol**1.2 * np.exp(0.4 * rng.standard_normal(n))
    tier = _choice(rng, cat.TIER_P, n)
    catalogue = np.empty((n, config.catalogue_size), dtype=np.int64)
    for c in np.unique(category):
        in_cat = np.flatnonzero(products.category == c)
        for t in range(len(cat.PRICE_TIERS)):
            rows = np.flatnonzero((category == c) & (tier == t))
            if len(rows) == 0:
                continue
            w = np.exp(-1.2 * np.abs(products.tier[in_cat] - t))
            draws = rng.choice(in_cat, size=(len(rows), config.catalogue_size), p=w / w.sum())
            catalogue[rows] = draws
    return Streamers(category, kol, tier, np.round(followers).astype(np.int64), catalogue)


def _trust(config: SimConfig, interest: np.ndarray, streamers: Streamers, rng) -> Trust:
    """1-3 trusted streamers per user, mostly in the user's interest categories."""
    n_users, n_cat, n_str = len(interest), len(config.categories), config.n_streamers
    has_streamer = np.bincount(streamers.category, minlength=n_cat) > 0
    n_trust = 1 + rng.binomial(2, 0.35, n_users)
    user = np.repeat(np.arange(n_users), n_trust)
    weights = np.where(rng.random(len(user))[:, None] < TRUST_FROM_INTEREST, interest[user], 1.0)
    category = _sample_rows(rng, weights * has_streamer)
    # Streamers within a category, by sqrt(KOL): big names attract trust but not all of it.
    pull = np.sqrt(streamers.kol)
    order = np.lexsort((np.arange(n_str), streamers.category))
    cum = np.cumsum(pull[order])
    lo = np.searchsorted(streamers.category[order], np.arange(n_cat))
    hi = np.searchsorted(streamers.category[order], np.arange(n_cat), side="right")
    base = np.where(lo > 0, cum[lo - 1], 0.0)
    target = base[category] + rng.random(len(user)) * (cum[hi - 1] - base)[category]
    pos = np.clip(np.searchsorted(cum, target, side="right"), lo[category], hi[category] - 1)
    streamer = order[pos]
    value = rng.uniform(0.3, 1.0, len(user))
    keys, first = np.unique(user * n_str + streamer, return_index=True)
    return Trust(keys // n_str, keys % n_str, value[first], n_str)
