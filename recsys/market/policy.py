"""The interface a policy offers the market, and what the market tells it.

A policy is a plain object with batched methods; the market calls them at its decision points
and checks every answer before anything happens (``recsys.market.checks``):

* ``recommend(requests, market) -> Slates``: for each arriving viewer, a ranked slate of cards,
  each a product on the shelf of a room that is live at the request's time (``session_id``,
  ``product_id``; -1 pads a short slate);
* ``grant_coupons(viewers, market) -> CouponGrants``: at the start of a day, which coupon tier
  (if any) each viewer gets, and for a room or product coupon, which room or product;
* ``notify(triggers, market) -> Messages``: which of the day's triggers (a followed streamer
  goes live ...) get a message, on which channel (only one the viewer consented to:
  ``market.consent``) and when (``recsys.market.messages``);
* ``observe(logs)``: after each day, that day's logs in the project's schema (what a learning
  policy retrains on). Policies that ignore it inherit the no-op.

``Policy`` gives the defaults (no coupons, no messages, observe nothing); ``recommend`` is the
one method every policy must write. ``MarketView`` answers what is live now, so a policy never
needs the schedule's internals.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.data.availability import live_sets
from recsys.market.coupons import CouponCatalogue


@dataclass(frozen=True)
class Requests:
    """Viewers opening the app: one row per request, in time order."""

    request_id: np.ndarray  # (n,) int64
    user_id: np.ndarray  # (n,) int64 public ids
    ts: np.ndarray  # (n,) int64
    k: int  # cards per slate

    def __len__(self) -> int:
        return len(self.request_id)

    def chunks(self, size: int) -> Iterator[Requests]:
        """Consecutive parts of at most ``size`` requests (a policy that expands every request
        into every live card bounds its memory by answering a part at a time)."""
        for lo in range(0, len(self), size):
            part = slice(lo, lo + size)
            yield Requests(self.request_id[part], self.user_id[part], self.ts[part], self.k)


@dataclass(frozen=True)
class Slates:
    """(n, k) cards per request: the live session showing each product; -1 pads."""

    session_id: np.ndarray
    product_id: np.ndarray

    @staticmethod
    def concat(parts: list[Slates], k: int) -> Slates:
        """The slates of consecutive request parts, in order."""
        if not parts:
            empty = np.zeros((0, k), dtype=np.int64)
            return Slates(empty, empty.copy())
        return Slates(np.concatenate([p.session_id for p in parts]),
                      np.concatenate([p.product_id for p in parts]))  # fmt: skip


@dataclass(frozen=True)
class CouponGrants:
    """One row per granted coupon: the viewer, the tier's name and, for a scoped tier, the
    streamer (room coupon) or product (product coupon) it is good for (-1 otherwise)."""

    user_id: np.ndarray
    tier: np.ndarray  # (m,) object: tier names of the market's catalogue
    target_id: np.ndarray

    @classmethod
    def none(cls) -> CouponGrants:
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, np.zeros(0, dtype=object), empty)

    def __len__(self) -> int:
        return len(self.user_id)


@dataclass(frozen=True)
class Messages:
    """One row per message: the trigger it answers, its channel and its send time."""

    trigger_id: np.ndarray
    channel: np.ndarray  # (m,) object: in_app | push | sms
    ts: np.ndarray

    @classmethod
    def none(cls) -> Messages:
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, np.zeros(0, dtype=object), empty)

    def __len__(self) -> int:
        return len(self.trigger_id)


class MarketView:
    """What a policy may know about the market: entities, the schedule, the coupon catalogue."""

    def __init__(self, frames: dict[str, pd.DataFrame], catalogue: CouponCatalogue) -> None:
        self.users, self.products = frames["users"], frames["products"]
        self.sessions, self.showcase = frames["live_sessions"], frames["showcase"]
        self.catalogue = catalogue
        # user_id, a bool column per channel, personalisation and coupons (recsys.privacy)
        self.consent: pd.DataFrame | None = None
        self.price = self.products.set_index("product_id")["price"]
        shelf = self.showcase[["session_id", "product_id"]].drop_duplicates()
        self.shelf = shelf.merge(self.sessions, on="session_id")  # one row per shelf item

    def live_shelf(self, ts: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
        """(indptr, rows): CSR over the query times of the shelf items (session_id,
        product_id, streamer_id) whose session is on air at each time."""
        start = self.shelf["start_ts"].to_numpy(np.int64)
        end = self.shelf["end_ts"].to_numpy(np.int64)
        rows = np.arange(len(self.shelf), dtype=np.int64)
        indptr, items = live_sets(rows, start, end, np.asarray(ts, dtype=np.int64))
        cols = ["session_id", "product_id", "streamer_id"]
        return indptr, self.shelf[cols].iloc[items].reset_index(drop=True)


class Policy:
    """Base class with the defaults: no coupons, nothing learned from the logs."""

    name = "policy"

    def recommend(self, requests: Requests, market: MarketView) -> Slates:
        raise NotImplementedError(f"{type(self).__name__}.recommend")

    def grant_coupons(self, viewers: np.ndarray, day: int, market: MarketView) -> CouponGrants:
        return CouponGrants.none()

    def notify(self, triggers: pd.DataFrame, market: MarketView) -> Messages:
        return Messages.none()

    def observe(self, logs: dict[str, pd.DataFrame]) -> None:
        """Called after each simulated day with that day's logs."""


class DecisionError(ValueError):
    """A policy's answer the market cannot carry out; nothing of that step is logged."""

    def __init__(self, policy: str, decision: str, field: str, row: int, why: str) -> None:
        super().__init__(f"policy {policy!r}, decision {decision!r}, row {row}, field {field!r}: "
                         f"{why}")  # fmt: skip
        self.policy, self.decision, self.field, self.row = policy, decision, field, row
