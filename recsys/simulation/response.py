"""How a synthetic world's viewer responds to a recommended product card: the answer key.

A card shows a live product (a row of a room's shelf) to a viewer at time ``t`` in a ranked
list. Its true click and purchase probabilities come from the same planted factors the
simulator uses inside rooms (``behaviour.py``), read back from the persisted truth tables, so
they work on any cached world:

* ``I`` interest of the viewer in the product's category, ``T`` trust in the room's streamer,
  brand match (domestic preference or its complement), attribute match (the product suits the
  viewer's body or skin type), price fit ``exp(-0.6 max(0, log(price / power)))``;
* whether the streamer is presenting the product right now (its showcase slot covers ``t``).
  A card for a product being presented carries the pitch: its rate is ``on_show_boost`` times
  higher and trust counts fully; a product only waiting on the shelf gets
  ``shelf_trust_share * T`` instead of ``T`` (in the click and in the purchase);
* a coupon dropped on the product's current slot, claimed with ``truth.claim_probability``.

With ``rate = CLICK_RATE (1 + T') (0.05 + I) (0.5 + brand) attr_factor fit [on_show_boost]``
(``behaviour.py``'s exposure rate), the card's click probability at list position ``j``
(0-based) is ``position_bias(j) * (1 - exp(-exposure_minutes * rate))`` with
``position_bias(j) = 1 / log2(j + 2)``, and a click converts with
``claim * P(buy | coupon) + (1 - claim) * P(buy | no coupon)`` (``truth.purchase_probability``,
``claim = 0`` without a live coupon). A product not live at ``t`` (its room off air or it is
not on that room's shelf) has probability 0 and ``live`` False.

``simulate_outcomes`` gives these expectations for any shown list, and ``outcome_summary`` /
``compare_outcomes`` turn them into list-level CTR, CVR (conversions per click) and CTCVR
(conversions per impression) with normal-approximation confidence intervals over requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from recsys.data.schema import TABLES
from recsys.data.tables import read_table
from recsys.data.timeline import KeyedIntervals, pair_codes
from recsys.simulation import truth as planted
from recsys.simulation.behaviour import ATTR_MATCH_FACTOR, ATTR_OTHER_FACTOR, CLICK_RATE

SHOWN_COLUMNS = ("request_id", "user_id", "ts", "product_id", "streamer_id", "session_id")


@dataclass(frozen=True)
class ResponseConfig:
    """The card-level assumptions on top of the in-room behaviour model."""

    exposure_minutes: float = 1.0  # in-room exposure a card is worth at the top position
    on_show_boost: float = 1.5  # rate multiplier while the streamer presents the product
    shelf_trust_share: float = 0.5  # share of trust that acts on a product not being presented

    def __post_init__(self) -> None:
        if self.exposure_minutes <= 0 or self.on_show_boost <= 0:
            raise ValueError("ResponseConfig: exposure_minutes and on_show_boost must be > 0")
        if not 0.0 <= self.shelf_trust_share <= 1.0:
            raise ValueError("ResponseConfig.shelf_trust_share must lie in [0, 1]")


def position_bias(position) -> np.ndarray:
    """Probability that a viewer examines list position ``position`` (0-based)."""
    return 1.0 / np.log2(np.asarray(position, dtype=np.float64) + 2.0)


def _index(ids: pd.Series, table: str, field: str) -> pd.Index:
    index = pd.Index(ids.to_numpy(np.int64))
    if not index.is_unique:
        raise ValueError(
            f"table {table!r}: field {field!r} repeats id {index[index.duplicated()][0]}"
        )
    return index


def _trust_pairs(trust: pd.DataFrame, users: pd.Index, streamers: pd.Index):
    """Sorted (user_pos * n_streamers + streamer_pos) codes of the planted trust, and values."""
    u = users.get_indexer(trust["user_id"].to_numpy(np.int64))
    s = streamers.get_indexer(trust["streamer_id"].to_numpy(np.int64))
    keys = pair_codes(u, s, len(streamers))
    known = keys >= 0  # a trusted streamer never on air cannot present anything
    order = np.argsort(keys[known], kind="stable")
    return keys[known][order], trust["trust"].to_numpy(np.float64)[known][order]


@dataclass(frozen=True)
class WorldTruth:
    """The planted factors of one world, indexed for vectorised look-ups by raw id."""

    users: pd.Index  # raw (pseudonymised) user ids
    interest: np.ndarray  # (U, C) in category order ``categories``
    categories: tuple[str, ...]
    power: np.ndarray
    sensitivity: np.ndarray
    domestic: np.ndarray
    body: np.ndarray  # (U,) object
    skin: np.ndarray
    trust_keys: np.ndarray  # sorted pair codes user_pos * n_streamers + streamer_pos
    trust_values: np.ndarray
    streamers: pd.Index
    products: pd.Index
    product_category: np.ndarray  # (P,) column of ``interest``
    price: np.ndarray
    imported: np.ndarray
    suits: np.ndarray  # (P,) object: the body/skin value a product is made for, None if any
    sessions: pd.Index
    session_streamer: np.ndarray  # (J,) raw streamer id
    session_start: np.ndarray
    session_end: np.ndarray
    shelf: np.ndarray  # sorted distinct pair codes session_pos * n_products + product_pos
    slots: KeyedIntervals  # showcase slots keyed by the same pair codes
    drops: KeyedIntervals  # coupon drops keyed likewise
    drop_value: np.ndarray

    @classmethod
    def from_folder(cls, folder: str | Path) -> WorldTruth:
        """Read only the entity and truth files a world folder needs (not its events)."""
        root = Path(folder)
        frames = {n: read_table(root / f"{n}.parquet", TABLES[n]) for n in
                  ("products", "live_sessions", "showcase")}  # fmt: skip
        names = ("users", "trusted_streamers", "products", "coupon_drops")
        missing = [n for n in names if not (root / "truth" / f"{n}.parquet").is_file()]
        if missing:
            raise FileNotFoundError(f"{root / 'truth'}: missing truth tables {missing}")
        truth = {n: pd.read_parquet(root / "truth" / f"{n}.parquet") for n in names}
        return cls.from_frames(**frames, truth=truth)

    @classmethod
    def from_frames(cls, *, products, live_sessions, showcase, truth) -> WorldTruth:
        users, tp = truth["users"], truth["products"]
        categories = tuple(c.removeprefix("interest_") for c in users.columns
                           if c.startswith("interest_"))  # fmt: skip
        product_ids = _index(products["product_id"], "products", "product_id")
        sessions = _index(live_sessions["session_id"], "live_sessions", "session_id")
        streamers = pd.Index(np.unique(live_sessions["streamer_id"].to_numpy(np.int64)))
        user_ids = _index(users["user_id"], "truth/users", "user_id")
        code = {name: i for i, name in enumerate(categories)}
        category = products["category"].astype(str).map(code)
        if category.isna().any():
            row = int(np.flatnonzero(category.isna().to_numpy())[0])
            raise ValueError(f"table 'products' row {row}: category without an interest column")
        suits = tp.set_index("product_id")["suits"].reindex(product_ids)
        trust_keys, trust_values = _trust_pairs(truth["trusted_streamers"], user_ids, streamers)
        n_p = len(product_ids)

        def pairs(frame: pd.DataFrame) -> np.ndarray:
            s = sessions.get_indexer(frame["session_id"].to_numpy(np.int64))
            return pair_codes(
                s, product_ids.get_indexer(frame["product_id"].to_numpy(np.int64)), n_p
            )

        slot_keys, drops = pairs(showcase), truth["coupon_drops"]
        return cls(
            users=user_ids,
            interest=users[[f"interest_{c}" for c in categories]].to_numpy(np.float64),
            categories=categories,
            power=users["purchasing_power"].to_numpy(np.float64),
            sensitivity=users["price_sensitivity"].to_numpy(np.float64),
            domestic=users["brand_pref_domestic"].to_numpy(np.float64),
            body=users["body_type"].to_numpy(object),
            skin=users["skin_type"].to_numpy(object),
            trust_keys=trust_keys,
            trust_values=trust_values,
            streamers=streamers,
            products=product_ids,
            product_category=category.to_numpy(np.int64),
            price=products["price"].to_numpy(np.float64),
            imported=products["imported"].to_numpy(bool),
            suits=suits.to_numpy(object),
            sessions=sessions,
            session_streamer=live_sessions["streamer_id"].to_numpy(np.int64),
            session_start=live_sessions["start_ts"].to_numpy(np.int64),
            session_end=live_sessions["end_ts"].to_numpy(np.int64),
            shelf=np.unique(slot_keys),
            slots=KeyedIntervals(slot_keys, showcase["start_ts"], showcase["end_ts"]),
            drops=KeyedIntervals(pairs(drops), drops["start_ts"], drops["end_ts"]),
            drop_value=drops["coupon_value"].to_numpy(np.float64),
        )

    def trust(self, user_pos: np.ndarray, streamer_pos: np.ndarray) -> np.ndarray:
        """Planted trust of each (user, streamer) position pair, 0 where there is none."""
        query = pair_codes(user_pos, streamer_pos, len(self.streamers))
        if len(self.trust_keys) == 0:
            return np.zeros(len(query))
        pos = np.minimum(np.searchsorted(self.trust_keys, query), len(self.trust_keys) - 1)
        return np.where(self.trust_keys[pos] == query, self.trust_values[pos], 0.0)


def _positions(index: pd.Index, ids, what: str) -> np.ndarray:
    pos = index.get_indexer(np.asarray(ids, dtype=np.int64))
    if np.any(pos < 0):
        row = int(np.flatnonzero(pos < 0)[0])
        raise ValueError(f"shown row {row}: {what} {np.asarray(ids)[row]} is not in the world")
    return pos


def card_factors(truth: WorldTruth, shown: pd.DataFrame) -> dict[str, np.ndarray]:
    """The planted factors of every shown (user, product, room, time) row."""
    missing = [c for c in SHOWN_COLUMNS if c not in shown.columns]
    if missing:
        raise ValueError(f"shown rows: missing columns {missing}")
    u = _positions(truth.users, shown["user_id"], "user_id")
    p = _positions(truth.products, shown["product_id"], "product_id")
    s = _positions(truth.sessions, shown["session_id"], "session_id")
    ts = shown["ts"].to_numpy(np.int64)
    pair = pair_codes(s, p, len(truth.products))
    on_air = (truth.session_start[s] <= ts) & (ts <= truth.session_end[s])
    on_shelf = np.isin(pair, truth.shelf, assume_unique=False)
    streamer = truth.streamers.get_indexer(truth.session_streamer[s])
    drop = truth.drops.covering(pair, ts)
    suits = truth.suits[p]
    tagged = pd.notna(suits)
    match = tagged & ((suits == truth.body[u]) | (suits == truth.skin[u]))
    domestic = truth.domestic[u]
    return {
        "live": on_air & on_shelf,
        "on_show": truth.slots.covering(pair, ts) >= 0,
        "interest": truth.interest[u, truth.product_category[p]],
        "trust": truth.trust(u, streamer),
        "brand": np.where(truth.imported[p], 1.0 - domestic, domestic),
        "attr_match": match,
        "attr_tagged": tagged,
        "price": truth.price[p],
        "power": truth.power[u],
        "sensitivity": truth.sensitivity[u],
        "coupon": np.where(drop >= 0, truth.drop_value[np.maximum(drop, 0)], 0.0),
    }


def card_probabilities(f: dict[str, np.ndarray], config: ResponseConfig) -> tuple:
    """(P(click | card examined), P(purchase | click)) from ``card_factors``."""
    trust = np.where(f["on_show"], f["trust"], config.shelf_trust_share * f["trust"])
    factor = np.where(
        f["attr_match"], ATTR_MATCH_FACTOR, np.where(f["attr_tagged"], ATTR_OTHER_FACTOR, 1.0)
    )
    fit = np.exp(-0.6 * np.maximum(0.0, np.log(f["price"] / f["power"])))
    rate = CLICK_RATE * (1 + trust) * (0.05 + f["interest"]) * (0.5 + f["brand"]) * factor * fit
    rate = rate * np.where(f["on_show"], config.on_show_boost, 1.0)
    click = np.where(f["live"], 1.0 - np.exp(-config.exposure_minutes * rate), 0.0)
    args = (f["interest"], trust, f["price"], f["power"], f["sensitivity"])
    extra = {"brand_match": f["brand"], "attr_match": f["attr_match"]}
    plain = planted.purchase_probability(*args, coupon_value=0.0, **extra)
    with_coupon = planted.purchase_probability(*args, coupon_value=f["coupon"], **extra)
    claim = np.where(f["coupon"] > 0, planted.claim_probability(f["sensitivity"]), 0.0)
    convert = np.where(f["live"], claim * with_coupon + (1.0 - claim) * plain, 0.0)
    return click, convert


def simulate_outcomes(
    truth: WorldTruth, shown: pd.DataFrame, config: ResponseConfig | None = None
) -> pd.DataFrame:
    """True expected outcomes of shown lists: the rows of ``shown`` (``SHOWN_COLUMNS`` and a
    0-based ``position``) with ``live``, ``p_click``, ``p_conversion`` (given a click) and
    ``p_ctcvr`` (per impression) added."""
    if "position" not in shown.columns:
        raise ValueError("shown rows: missing column 'position'")
    f = card_factors(truth, shown)
    card, convert = card_probabilities(f, config or ResponseConfig())
    p_click = position_bias(shown["position"].to_numpy()) * card
    out = shown.copy()
    out["live"], out["on_show"] = f["live"], f["on_show"]
    out["p_click"], out["p_conversion"] = p_click, convert
    out["p_ctcvr"] = p_click * convert
    return out


def _per_request(outcomes: pd.DataFrame) -> pd.DataFrame:
    grouped = outcomes.groupby("request_id", sort=True)
    return pd.DataFrame(
        {
            "impressions": grouped.size(),
            "clicks": grouped["p_click"].sum(),
            "conversions": grouped["p_ctcvr"].sum(),
        }
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, np.ndarray]:
    """Ratio of sums and each request's linearised contribution to its error."""
    total = den.sum()
    est = num.sum() / total if total > 0 else 0.0
    return est, (num - est * den) / total if total > 0 else np.zeros_like(num)


def _interval(est: float, influence: np.ndarray, level: float) -> dict:
    n = len(influence)
    se = float(np.sqrt(n / max(n - 1, 1) * np.sum(influence**2)))
    z = stats.norm.ppf(0.5 + level / 2)
    return {"value": float(est), "se": se, "low": float(est - z * se), "high": float(est + z * se)}


RATES = {"ctr": ("clicks", "impressions"), "cvr": ("conversions", "clicks"),
         "ctcvr": ("conversions", "impressions")}  # fmt: skip


def outcome_summary(outcomes: pd.DataFrame, level: float = 0.95) -> dict:
    """List-level CTR, CVR and CTCVR (ratios of expected sums) with intervals over requests."""
    r = _per_request(outcomes)
    out = {"requests": len(r), "impressions": int(r["impressions"].sum())}
    for name, (num, den) in RATES.items():
        est, infl = _ratio(r[num].to_numpy(float), r[den].to_numpy(float))
        out[name] = _interval(est, infl, level)
    return out


def compare_outcomes(a: pd.DataFrame, b: pd.DataFrame, level: float = 0.95) -> dict:
    """Paired difference a - b of each rate over the requests both lists answer."""
    ra, rb = _per_request(a), _per_request(b)
    if not ra.index.equals(rb.index):
        raise ValueError("compare_outcomes: the two outcome sets answer different requests")
    out = {"requests": len(ra)}
    for name, (num, den) in RATES.items():
        ea, ia = _ratio(ra[num].to_numpy(float), ra[den].to_numpy(float))
        eb, ib = _ratio(rb[num].to_numpy(float), rb[den].to_numpy(float))
        out[name] = _interval(ea - eb, ia - ib, level)
    return out


def true_gains(
    truth: WorldTruth, rows: pd.DataFrame, config: ResponseConfig | None = None
) -> np.ndarray:
    """Position-free P(click and convert | card examined) of each (``SHOWN_COLUMNS``) row:
    the graded relevance the truth gives an item, whatever list it sits in."""
    card, convert = card_probabilities(card_factors(truth, rows), config or ResponseConfig())
    return card * convert


def ndcg_per_request(ranked: pd.DataFrame, candidates: pd.DataFrame, k: int = 10) -> pd.Series:
    """NDCG@k per request of ranked lists whose rows carry ``request_id``, ``position`` and
    ``gain`` (``true_gains``), against the best k of each request's ``candidates`` (same
    columns but ``position``); 0 where no candidate has any gain."""
    c = candidates.sort_values(["request_id", "gain"], ascending=[True, False], kind="stable")
    rank = c.groupby("request_id", sort=False).cumcount().to_numpy()
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    top = rank < k
    ideal = pd.Series(c["gain"].to_numpy()[top] * discount[rank[top]])
    ideal = ideal.groupby(c["request_id"].to_numpy()[top]).sum()
    shown = ranked.loc[ranked["position"] < k]
    dcg = pd.Series(shown["gain"].to_numpy() * discount[shown["position"].to_numpy()])
    dcg = dcg.groupby(shown["request_id"].to_numpy()).sum().reindex(ideal.index, fill_value=0.0)
    return (dcg / ideal.where(ideal > 0, 1.0)).where(ideal > 0, 0.0)


def mean_interval(values, level: float = 0.95) -> dict:
    """Mean of per-request values with a normal interval (e.g. NDCG, or paired differences)."""
    x = np.asarray(values, dtype=np.float64)
    return _interval(x.mean(), (x - x.mean()) / len(x), level)
