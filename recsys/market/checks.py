"""Every policy answer is checked before the market acts on it.

A slate may only show products on the shelf of a room that is on air at the request's time, a
coupon only name a tier of the catalogue, a known viewer, and for a scoped tier a known room or
product that the coupon does not exceed in value. The first fault raises ``DecisionError``
naming the policy, the decision, the row and the field; the market then logs nothing of the
step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.timeline import pair_codes
from recsys.market.coupons import GRANT_COLUMNS
from recsys.market.policy import CouponGrants, DecisionError, MarketView, Requests, Slates


def _fail(policy: str, decision: str, field: str, rows: np.ndarray, why: str) -> None:
    bad = np.flatnonzero(rows)
    if len(bad):
        raise DecisionError(policy, decision, field, int(bad[0]), why)


def check_slates(policy: str, requests: Requests, slates: Slates, view: MarketView) -> pd.DataFrame:
    """The shown cards (one row per non-padding card) of valid slates; raises otherwise."""
    shape = (len(requests), requests.k)
    for field in ("session_id", "product_id"):
        a = np.asarray(getattr(slates, field))
        if a.shape != shape or not np.issubdtype(a.dtype, np.integer):
            raise DecisionError(policy, "recommend", field, 0,
                                f"expected an integer array of shape {shape}, got {a.dtype} "
                                f"{a.shape}")  # fmt: skip
    session, product = np.asarray(slates.session_id), np.asarray(slates.product_id)
    _fail(policy, "recommend", "product_id", (session < 0) != (product < 0),
          "a card names a product without a session (or the reverse); -1 pads both")  # fmt: skip
    req, pos = np.nonzero(product >= 0)
    s, p, ts = session[req, pos], product[req, pos], requests.ts[req]
    sessions = view.sessions.set_index("session_id")
    known = sessions.index.get_indexer(s)
    _fail(policy, "recommend", "session_id", known < 0, "not a session of this world")
    _fail(policy, "recommend", "product_id", ~np.isin(p, view.price.index),
          "not a product of this world")  # fmt: skip
    start = sessions["start_ts"].to_numpy(np.int64)[known]
    end = sessions["end_ts"].to_numpy(np.int64)[known]
    _fail(policy, "recommend", "session_id", (ts < start) | (ts > end), "session not on air now")
    n_p = int(view.price.index.max()) + 1
    shelf = pair_codes(view.shelf["session_id"].to_numpy(np.int64),
                       view.shelf["product_id"].to_numpy(np.int64), n_p)  # fmt: skip
    _fail(policy, "recommend", "product_id", ~np.isin(pair_codes(s, p, n_p), shelf),
          "product not on that live room's shelf")  # fmt: skip
    card = pair_codes(req, pair_codes(s, p, n_p), n_p * (int(s.max(initial=0)) + 1))
    _, first = np.unique(card, return_index=True)
    repeated = np.ones(len(card), dtype=bool)
    repeated[first] = False
    _fail(policy, "recommend", "product_id", repeated, "the same card twice in one slate")
    streamer = sessions["streamer_id"].to_numpy(np.int64)[known]
    return pd.DataFrame({"request_id": requests.request_id[req], "user_id": requests.user_id[req],
                         "ts": ts, "position": pos.astype(np.int64), "session_id": s,
                         "streamer_id": streamer, "product_id": p})  # fmt: skip


def check_grants(
    policy: str, grants: CouponGrants, view: MarketView, ts: int, first_id: int
) -> pd.DataFrame:
    """Valid grants as rows of ``GRANT_COLUMNS`` (ids from ``first_id``); raises otherwise."""
    user = np.asarray(grants.user_id, dtype=np.int64)
    tier_name = np.asarray(grants.tier, dtype=object)
    target = np.asarray(grants.target_id, dtype=np.int64)
    if not len(user) == len(tier_name) == len(target):
        raise DecisionError(policy, "grant_coupons", "user_id", 0, "columns differ in length")
    _fail(policy, "grant_coupons", "user_id", ~np.isin(user, view.users["user_id"].to_numpy()),
          "not a viewer of this world")  # fmt: skip
    if view.consent is not None and "coupons" in view.consent:
        agreed = view.consent.set_index("user_id")["coupons"].reindex(user).fillna(False)
        _fail(policy, "grant_coupons", "user_id", ~agreed.to_numpy(bool),
              "the viewer has not consented to personalised coupons")  # fmt: skip
    names = [t.name for t in view.catalogue.tiers]
    _fail(policy, "grant_coupons", "tier", ~np.isin(tier_name, names),
          f"not a tier of the catalogue {names}")  # fmt: skip
    tiers = [view.catalogue.tiers[view.catalogue.index(n)] for n in tier_name]
    scope = np.array([t.scope for t in tiers], dtype=object)
    face = np.array([t.face_value for t in tiers], dtype=np.float64)
    _fail(policy, "grant_coupons", "target_id", (scope == "order") & (target != -1),
          "an order coupon takes no target (-1)")  # fmt: skip
    streamers = view.sessions["streamer_id"].unique()
    _fail(policy, "grant_coupons", "target_id", (scope == "streamer") & ~np.isin(target, streamers),
          "not a streamer of this world")  # fmt: skip
    product = scope == "product"
    _fail(policy, "grant_coupons", "target_id", product & ~np.isin(target, view.price.index),
          "not a product of this world")  # fmt: skip
    price = view.price.reindex(np.where(product, target, view.price.index[0])).to_numpy()
    _fail(policy, "grant_coupons", "target_id", product & (face >= price),
          "coupon worth the product's whole price or more")  # fmt: skip
    return pd.DataFrame({
        "grant_id": np.arange(first_id, first_id + len(user), dtype=np.int64),
        "ts": np.full(len(user), ts, dtype=np.int64),
        "user_id": user,
        "tier": tier_name,
        "scope": scope,
        "target_id": target,
        "face_value": face,
        "threshold": np.array([t.threshold for t in tiers], dtype=np.float64),
        "expires_ts": ts + np.array([t.validity_s for t in tiers], dtype=np.int64),
    }, columns=list(GRANT_COLUMNS))  # fmt: skip
