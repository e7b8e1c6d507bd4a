"""What a clicked card leaves in the event log, in the world's own event blocks.

A click on a card takes the viewer into the room: ``enter`` a second after the request,
``click`` on the product, a ``cart`` and a ``purchase`` (its amount net of the coupon used, the
coupon's value in ``coupon_value``) when they happen, and ``leave`` after a minute, all within
the live session (a visit that would outlast it ends with it). Purchases
are refunded as in the world (``behaviour.draw_refunds``), on the day the refund falls due.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.simulation.behaviour import block, draw_refunds
from recsys.simulation.response import WorldTruth

ENTER_S, CLICK_S, CART_S, PURCHASE_S, DWELL_S = 1, 5, 20, 40, 60


def market_blocks(
    outcomes: pd.DataFrame,
    users: pd.Index,
    truth: WorldTruth,
    rng: np.random.Generator,
    *,
    visits: bool = False,
) -> tuple[dict[str, dict], dict]:
    """(event blocks by type, refund block) of the clicked cards in ``outcomes``; with
    ``visits`` every row is a visit (entered and left, clicked or not)."""
    c = outcomes if visits else outcomes.loc[outcomes["click"].to_numpy(bool)]
    user = users.get_indexer(c["user_id"].to_numpy(np.int64))
    ts = c["ts"].to_numpy(np.int64)
    room = {"session": c["session_id"].to_numpy(np.int64),
            "streamer": c["streamer_id"].to_numpy(np.int64)}  # fmt: skip
    product = c["product_id"].to_numpy(np.int64)
    end = truth.session_end[truth.sessions.get_indexer(room["session"])]

    def at(delay: int) -> np.ndarray:  # a visit never outlasts its live session
        return np.minimum(ts + delay, end)

    def pick(mask: np.ndarray, kind: str, delay: int, **extra) -> dict:
        fields = {k: a[mask] for k, a in (room | extra).items()}
        return block(kind, at(delay)[mask], user[mask], **fields)

    every = np.ones(len(c), dtype=bool)
    clicked = c["click"].to_numpy(bool)
    bought, carted = c["purchase"].to_numpy(bool), c["cart"].to_numpy(bool)
    coupon = c["coupon_value"].to_numpy(np.float64)
    blocks = {
        "enter": pick(every, "enter", ENTER_S),
        "click": pick(clicked, "click", CLICK_S, product=product),
        "cart": pick(carted, "cart", CART_S, product=product),
        "purchase": pick(
            bought,
            "purchase",
            PURCHASE_S,
            product=product,
            amount=c["amount"].to_numpy(np.float64),
            coupon=np.where(coupon > 0, coupon, np.nan),
        ),  # fmt: skip
        "leave": pick(every, "leave", DWELL_S, dwell=(at(DWELL_S) - at(ENTER_S)).astype(float)),
    }
    category = truth.product_category[truth.products.get_indexer(product[bought])]
    interest = truth.interest[truth.users.get_indexer(c["user_id"].to_numpy(np.int64)[bought]),
                              category]  # fmt: skip
    return blocks, draw_refunds(interest, blocks["purchase"], rng)
