"""What viewers do inside a room during their visits, for one chunk, as event columns.

Per visit of dwell ``d`` minutes with interest ``I`` in the room's category and trust ``T`` in
its streamer (all counts Poisson, all times uniform inside the visit):

* likes ~ d * LIKE_RATE * (0.3 + I + T), shares ~ d * SHARE_RATE * (0.1 + I + T),
  comments ~ d * COMMENT_RATE * (0.3 + I + 0.5 T) with templates from ``comments.py``;
* follow with 1 - exp(-d * FOLLOW_RATE * (0.05 + I + 2 T)), once per (user, streamer) ever.

Per exposure (a product segment overlapping the visit for ``o`` minutes):

* click with 1 - exp(-o * CLICK_RATE * (1 + T) * (0.05 + I) * (0.5 + brand_match)
  * attr_factor * exp(-0.6 * max(0, log(price / power)))), at a time inside the overlap;
* a dropped coupon is claimed by a clicker with ``truth.claim_probability(sensitivity)``;
* purchase with ``truth.purchase_probability`` (coupon counted only when claimed), after the
  click and claim, inside the segment; amount = price - coupon; cart with 0.25 + 0.6 * bought;
* refund with REFUND_BASE + REFUND_OFF_INTEREST * (1 - I), 2 h + lognormal (median 36 h)
  later, for the paid amount. Refunds are returned separately: they fall in later chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.schema import EVENT_TYPES
from recsys.simulation import truth
from recsys.simulation.comments import TemplateBook
from recsys.simulation.schedule import Schedule
from recsys.simulation.visits import Visits
from recsys.simulation.world import World

LIKE_RATE, SHARE_RATE, COMMENT_RATE, FOLLOW_RATE = 0.3, 0.02, 0.12, 0.02
CLICK_RATE = 0.5
ATTR_MATCH_FACTOR, ATTR_OTHER_FACTOR = 2.0, 0.6
CART_BASE, CART_BOUGHT = 0.25, 0.6
REFUND_BASE, REFUND_OFF_INTEREST = 0.05, 0.12
REFUND_MIN_DELAY_S, REFUND_MEDIAN_S, REFUND_SIGMA = 2 * 3600, 36 * 3600, 0.7

CODE = {name: i for i, name in enumerate(EVENT_TYPES)}
# Rows are concatenated in this order, then stably sorted by time: at equal seconds a visit's
# enter comes first, click before claim/cart/purchase, and leave last.
BLOCK_ORDER = (
    "enter",
    "click",
    "coupon_claim",
    "cart",
    "purchase",
    "like",
    "comment",
    "share",
    "follow",
    "refund",
    "leave",
)
INT_FIELDS = ("session", "streamer", "product", "comment")
FLOAT_FIELDS = ("dwell", "amount", "coupon")


def block(kind: str, ts, user, **fields) -> dict[str, np.ndarray]:
    """Event columns of one type; absent ints are -1, absent floats NaN."""
    n = len(ts)
    out = {
        "ts": np.asarray(ts, dtype=np.int64),
        "user": np.asarray(user, dtype=np.int64),
        "type": np.full(n, CODE[kind], dtype=np.int8),
    }
    for name in INT_FIELDS:
        out[name] = np.asarray(fields.pop(name, np.full(n, -1)), dtype=np.int64)
    for name in FLOAT_FIELDS:
        out[name] = np.asarray(fields.pop(name, np.full(n, np.nan)), dtype=np.float64)
    if fields:
        raise TypeError(f"unknown event fields {sorted(fields)}")
    return out


def assemble(blocks: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """All blocks as one set of columns, sorted by time (stable in BLOCK_ORDER)."""
    parts = [blocks[k] for k in BLOCK_ORDER if k in blocks]
    cols = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    order = np.argsort(cols["ts"], kind="stable")
    return {name: col[order] for name, col in cols.items()}


@dataclass
class FollowState:
    """Sorted keys ``user * n_streamers + streamer`` of pairs that already follow."""

    keys: np.ndarray

    def new(self, keys: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        seen = (self.keys[pos] == keys) if len(self.keys) else np.zeros(len(keys), dtype=bool)
        return ~seen


def _uniform_in(lo: np.ndarray, hi: np.ndarray, rng) -> np.ndarray:
    """Integer time uniform in [lo, hi] (inclusive)."""
    return lo + np.floor(rng.random(len(lo)) * (hi - lo + 1)).astype(np.int64)


def _poisson_times(visits: Visits, rate: np.ndarray, rng):
    """Visit index and time of Poisson(rate) events per visit, uniform in [enter, leave]."""
    count = rng.poisson(rate)
    idx = np.repeat(np.arange(len(visits)), count)
    return idx, _uniform_in(visits.enter[idx], visits.enter[idx] + visits.dwell[idx], rng)


def room_events(
    world: World,
    schedule: Schedule,
    book: TemplateBook,
    visits: Visits,
    follows: FollowState,
    rng: np.random.Generator,
) -> dict[str, dict]:
    """Visit-level blocks (enter, leave, like, comment, share, follow); updates ``follows``."""
    v = visits
    streamer = schedule.streamer[v.session]
    room = {"session": v.session, "streamer": streamer}
    minutes, i, t = v.dwell / 60.0, v.interest, v.trust
    blocks = {
        "enter": block("enter", v.enter, v.user, **room),
        "leave": block("leave", v.enter + v.dwell, v.user, dwell=v.dwell.astype(float), **room),
    }
    for kind, rate in (("like", LIKE_RATE * (0.3 + i + t)), ("share", SHARE_RATE * (0.1 + i + t))):
        idx, ts = _poisson_times(v, minutes * rate, rng)
        blocks[kind] = block(kind, ts, v.user[idx], session=v.session[idx], streamer=streamer[idx])
    idx, ts = _poisson_times(v, minutes * COMMENT_RATE * (0.3 + i + 0.5 * t), rng)
    category = world.streamers.category[streamer[idx]]
    user = v.user[idx]
    text = book.choose(
        rng,
        category,
        world.attr_kind[category],
        world.user_attr(user, category),
        world.users.sensitivity[user],
    )
    blocks["comment"] = block(
        "comment", ts, user, session=v.session[idx], streamer=streamer[idx], comment=text
    )
    blocks["follow"] = _follows(world, v, streamer, follows, rng)
    return blocks


def _follows(world: World, v: Visits, streamer, follows: FollowState, rng) -> dict:
    p = 1.0 - np.exp(-(v.dwell / 60.0) * FOLLOW_RATE * (0.05 + v.interest + 2.0 * v.trust))
    ts = _uniform_in(v.enter, v.enter + v.dwell, rng)
    keys = v.user * world.config.n_streamers + streamer
    cand = np.flatnonzero((rng.random(len(v)) < p) & follows.new(keys))
    cand = cand[np.lexsort((ts[cand], keys[cand]))]
    keys_sorted, first = np.unique(keys[cand], return_index=True)
    pick = np.sort(cand[first])
    follows.keys = np.union1d(follows.keys, keys_sorted)
    return block("follow", ts[pick], v.user[pick], session=v.session[pick], streamer=streamer[pick])


def _exposures(schedule: Schedule, v: Visits, origin: int):
    """(visit index, segment index, overlap start, overlap end) of every segment a visit sees."""
    key = (schedule.seg_session << 34) + (schedule.seg_start - origin)
    leave = v.enter + v.dwell
    lo = np.searchsorted(key, (v.session << 34) + (v.enter - origin), side="right") - 1
    hi = np.searchsorted(key, (v.session << 34) + (leave - 1 - origin), side="right") - 1
    n = hi - lo + 1
    visit = np.repeat(np.arange(len(v)), n)
    seg = lo[visit] + np.arange(len(visit)) - np.repeat(np.cumsum(n) - n, n)
    start = np.maximum(v.enter[visit], schedule.seg_start[seg])
    end = np.minimum(leave[visit], schedule.seg_end[seg])
    return visit, seg, start, end


def shopping_events(
    world: World, schedule: Schedule, visits: Visits, rng: np.random.Generator
) -> tuple[dict[str, dict], dict]:
    """Click, coupon_claim, cart and purchase blocks, and the refund block for later chunks."""
    users, products = world.users, world.products
    visit, seg, start, end = _exposures(schedule, visits, world.config.start_ts)
    user, product = visits.user[visit], schedule.seg_product[seg]
    interest, trust = visits.interest[visit], visits.trust[visit]
    price, power = products.price[product], users.power[user]
    brand = np.where(products.imported[product], 1.0 - users.domestic[user], users.domestic[user])
    attr = products.attr[product]
    match = (attr > 0) & (attr == world.user_attr(user, products.category[product]))
    factor = np.where(match, ATTR_MATCH_FACTOR, np.where(attr > 0, ATTR_OTHER_FACTOR, 1.0))
    fit = np.exp(-0.6 * np.maximum(0.0, np.log(price / power)))
    rate = CLICK_RATE * (1 + trust) * (0.05 + interest) * (0.5 + brand) * factor * fit
    clicked = rng.random(len(visit)) < 1.0 - np.exp(-(end - start) / 60.0 * rate)

    c = np.flatnonzero(clicked)
    last = end[c] - 1
    click_ts = _uniform_in(start[c], last, rng)
    offered = schedule.seg_coupon[seg[c]]
    claimed = (offered > 0) & (
        rng.random(len(c)) < truth.claim_probability(users.sensitivity[user[c]])
    )
    claim_ts = _uniform_in(click_ts, last, rng)
    used = np.where(claimed, offered, 0.0)
    p_buy = truth.purchase_probability(
        interest[c],
        trust[c],
        price[c],
        power[c],
        users.sensitivity[user[c]],
        used,
        brand[c],
        match[c],
    )
    bought = rng.random(len(c)) < p_buy
    buy_ts = _uniform_in(np.where(claimed, claim_ts, click_ts), last, rng)
    carted = rng.random(len(c)) < CART_BASE + CART_BOUGHT * bought
    cart_ts = _uniform_in(click_ts, np.where(bought, buy_ts, last), rng)

    room = {
        "session": visits.session[visit[c]],
        "product": product[c],
        "streamer": schedule.streamer[visits.session[visit[c]]],
    }
    amount = np.round(price[c] - used, 2)

    def pick(mask, ts, kind, **extra):
        return block(
            kind, ts[mask], user[c][mask], **{k: a[mask] for k, a in (room | extra).items()}
        )

    blocks = {
        "click": pick(np.ones(len(c), dtype=bool), click_ts, "click"),
        "coupon_claim": pick(claimed, claim_ts, "coupon_claim", coupon=offered),
        "cart": pick(carted, cart_ts, "cart"),
        "purchase": pick(
            bought, buy_ts, "purchase", amount=amount, coupon=np.where(claimed, offered, np.nan)
        ),
    }
    refunds = draw_refunds(interest[c][bought], blocks["purchase"], rng)
    return blocks, refunds


def draw_refunds(interest: np.ndarray, purchase: dict, rng) -> dict:
    p = REFUND_BASE + REFUND_OFF_INTEREST * (1.0 - interest)
    r = rng.random(len(p)) < p
    delay = REFUND_MIN_DELAY_S + REFUND_MEDIAN_S * np.exp(
        REFUND_SIGMA * rng.standard_normal(len(p))
    )
    return block(
        "refund",
        purchase["ts"][r] + delay[r].astype(np.int64),
        purchase["user"][r],
        streamer=purchase["streamer"][r],
        product=purchase["product"][r],
        amount=purchase["amount"][r],
    )
