"""Messages: triggers the platform sees, what a policy sends, and how viewers respond.

Triggers (``day_triggers``): a streamer a viewer follows goes live today (one trigger per
follower and session, known from the follow events so far); a product in a viewer's cart,
not bought since, is featured today (the announced line-up: ``MarketView.showcase``; one
trigger per cart item and showcase slot, ``start_ts`` the slot's start). A policy answers
with messages (``Messages``: which triggers, on which channel, when); each channel costs
``CHANNEL_COST`` yuan, and may only reach a viewer who consented to it (``consent``: everyone
to in-app messages, a planted share to push and SMS).

Planted response (the answer key, never shown to policies): a message is opened with

    logit = CHANNEL_BASE[channel] + 1.5 * relevance + 0.5 * log(24 * hour_share + 0.01)
            - 0.3 * fatigue

where relevance = the viewer's interest in the streamer's category + their trust in the
streamer, hour_share = the viewer's share of activity at the local send hour, and fatigue = the
messages they received over the previous seven days. An opened message brings the viewer into
the room with ``P_VISIT`` (once it is live, if it is not yet), where they see the product on
show (if one is being presented). Push and SMS messages make a viewer withdraw that channel's
consent with probability ``0.002 + 0.01 * fatigue``. A message's planted effect on room
entries is P(open before the session ends) * P_VISIT: the viewer's own visits happen with or
without it, so the effect adds to the number of entries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import lognorm

from recsys.data.availability import live_sets
from recsys.market.policy import DecisionError, MarketView, Messages

CHANNELS = ("in_app", "push", "sms")
CHANNEL_COST = {"in_app": 0.0, "push": 0.01, "sms": 0.05}
CHANNEL_BASE = {"in_app": -3.0, "push": -2.5, "sms": -2.0}
CONSENT_SHARE = {"in_app": 1.0, "push": 0.7, "sms": 0.3}
P_VISIT = 0.6
FATIGUE_DAYS = 7
TRIGGER_COLUMNS = ("trigger_id", "user_id", "kind", "session_id", "streamer_id", "product_id",
                   "start_ts")  # fmt: skip
TRIGGER_KINDS = ("followed_streamer_live", "carted_item_featured")


def planted_consent(user_id: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Which channels each viewer agreed to be reached on."""
    out = pd.DataFrame({"user_id": user_id})
    for channel, share in CONSENT_SHARE.items():
        out[channel] = rng.random(len(user_id)) < share
    return out


def day_triggers(
    follows: np.ndarray, n_streamers: int, carts: pd.DataFrame, view: MarketView,
    day_window: tuple[int, int], pseudonym: np.ndarray, first_id: int,
) -> pd.DataFrame:  # fmt: skip
    """Today's triggers in ``TRIGGER_COLUMNS``, ordered by time.

    ``follows``: sorted keys ``user * n_streamers + streamer`` (user indices); ``carts``: the
    open cart items (``user_id``, ``product_id``)."""
    lo, hi = day_window
    s = view.sessions
    starting = s.loc[(s["start_ts"] >= lo) & (s["start_ts"] < hi)]
    pairs = pd.DataFrame({"user_id": pseudonym[follows // n_streamers],
                          "streamer_id": follows % n_streamers})  # fmt: skip
    live = pairs.merge(starting[["session_id", "streamer_id", "start_ts"]], on="streamer_id")
    live = live.assign(kind=TRIGGER_KINDS[0], product_id=-1)
    slots = view.showcase.loc[(view.showcase["start_ts"] >= lo) & (view.showcase["start_ts"] < hi)]
    slots = slots.merge(s[["session_id", "streamer_id"]], on="session_id")
    featured = carts[["user_id", "product_id"]].merge(
        slots[["session_id", "streamer_id", "product_id", "start_ts"]],
                           on="product_id").assign(kind=TRIGGER_KINDS[1])  # fmt: skip
    out = pd.concat([live, featured], ignore_index=True)
    out = out.sort_values(["start_ts", "session_id", "user_id", "product_id"], kind="stable")
    out["trigger_id"] = np.arange(first_id, first_id + len(out), dtype=np.int64)
    return out[list(TRIGGER_COLUMNS)].astype({c: np.int64 for c in TRIGGER_COLUMNS
                                              if c != "kind"}).reset_index(drop=True)  # fmt: skip


def open_carts(carts: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """The cart items (``user_id``, ``product_id``, ``ts`` of the last cart) still open after
    ``events``: carted, and not bought since the last time they were carted."""
    ev = events.loc[events["event_type"].isin(("cart", "purchase"))]
    if ev.empty:
        return carts
    ev = ev.astype({"product_id": np.int64})
    last = ev.groupby(["user_id", "product_id", "event_type"])["ts"].max().unstack("event_type")
    last = last.reindex(columns=["cart", "purchase"])
    before = carts.set_index(["user_id", "product_id"])["ts"]
    cart = last["cart"].combine_first(before) if len(before) else last["cart"]
    bought = last["purchase"].reindex(cart.index)
    open_ = cart.loc[cart.notna() & ~(bought >= cart)].astype(np.int64)
    return open_.rename("ts").reset_index().sort_values(["user_id", "product_id"],
                                                        ignore_index=True)  # fmt: skip


def check_messages(
    policy: str, messages: Messages, triggers: pd.DataFrame, consent: pd.DataFrame,
    day_window: tuple[int, int],
) -> pd.DataFrame:  # fmt: skip
    """The messages joined to their triggers; raises ``DecisionError`` on the first fault."""
    tid = np.asarray(messages.trigger_id, dtype=np.int64)
    channel = np.asarray(messages.channel, dtype=object)
    ts = np.asarray(messages.ts, dtype=np.int64)

    def fail(field: str, bad: np.ndarray, why: str) -> None:
        if bad.any():
            raise DecisionError(policy, "notify", field, int(np.flatnonzero(bad)[0]), why)

    if not len(tid) == len(channel) == len(ts):
        raise DecisionError(policy, "notify", "trigger_id", 0, "columns differ in length")
    fail("trigger_id", ~np.isin(tid, triggers["trigger_id"].to_numpy()), "not a trigger of today")
    fail("trigger_id", pd.Series(tid).duplicated().to_numpy(), "a second message for a trigger")
    fail("channel", ~np.isin(channel, CHANNELS), f"not one of {CHANNELS}")
    rows = triggers.set_index("trigger_id").loc[tid].reset_index()
    fail("ts", (ts < day_window[0]) | (ts > rows["start_ts"].to_numpy()),
         "sent before the day or after the session started")  # fmt: skip
    agreed = consent.set_index("user_id").reindex(rows["user_id"].to_numpy())
    ok = np.array([bool(agreed[c].iat[i]) for i, c in enumerate(channel)], dtype=bool)
    fail("channel", ~ok, "the viewer has not consented to this channel")
    return rows.assign(
        ts=ts, channel=channel, cost=np.array([CHANNEL_COST[c] for c in channel], dtype=np.float64)
    )


def open_probability(channel, relevance, hour_share, fatigue) -> np.ndarray:
    base = np.array([CHANNEL_BASE[c] for c in channel], dtype=np.float64)
    hour = np.log(24 * np.asarray(hour_share) + 0.01)  # 0 at an average hour
    logit = base + 1.5 * np.asarray(relevance) + 0.5 * hour - 0.3 * np.asarray(fatigue)
    return 1.0 / (1.0 + np.exp(-logit))


def on_show(view: MarketView, session: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The product each session presents at ``ts`` (-1 between segments)."""
    sc = view.showcase
    indptr, rows = live_sets(np.arange(len(sc), dtype=np.int64), sc["start_ts"].to_numpy(np.int64),
                             sc["end_ts"].to_numpy(np.int64), ts)  # fmt: skip
    out = np.full(len(ts), -1, dtype=np.int64)
    s_of = sc["session_id"].to_numpy(np.int64)
    p_of = sc["product_id"].to_numpy(np.int64)
    for i in range(len(ts)):
        hit = rows[indptr[i] : indptr[i + 1]]
        hit = hit[s_of[hit] == session[i]]
        if len(hit):
            out[i] = p_of[hit[0]]
    return out


OPEN_DELAY_MEDIAN_S, OPEN_DELAY_SIGMA = 1200.0, 1.0
DELAY = lognorm(s=OPEN_DELAY_SIGMA, scale=OPEN_DELAY_MEDIAN_S)  # seconds from send to open
MESSAGE_DRAWS = ("open", "delay", "visit", "unsubscribe")


def fatigue(history_user: np.ndarray, history_ts: np.ndarray, user: np.ndarray,
            ts: np.ndarray) -> np.ndarray:  # fmt: skip
    """Messages each (user, ts) received in the ``FATIGUE_DAYS`` before ``ts``, counted by two
    searches over the history sorted by (user, time)."""
    users = pd.Index(np.unique(history_user))
    span = np.int64(1) << 40  # above any time stamp: keys of one user never meet another's

    def keys(u: np.ndarray, t: np.ndarray) -> np.ndarray:
        return users.get_indexer(u).astype(np.int64) * span + np.asarray(t, dtype=np.int64)

    seen = np.sort(keys(history_user, history_ts))
    q = keys(user, ts)
    count = np.searchsorted(seen, q) - np.searchsorted(seen, q - FATIGUE_DAYS * 86_400)
    return np.where(users.get_indexer(user) >= 0, count, 0).astype(np.float64)


def respond_messages(
    sent: pd.DataFrame, relevance: np.ndarray, hour_share: np.ndarray, tired: np.ndarray,
    session_end: np.ndarray, rng: np.random.Generator,
) -> pd.DataFrame:  # fmt: skip
    """Opens, visits and withdrawn consents of checked messages, with the true probabilities:
    ``p_open`` and ``p_visit`` (an entry into the session: opened, in time, and visited)."""
    u = rng.random((len(sent), len(MESSAGE_DRAWS)))
    channel = sent["channel"].to_numpy(object)
    p_open = open_probability(channel, relevance, hour_share, tired)
    opened = u[:, 0] < p_open
    delay = DELAY.ppf(u[:, 1])
    open_ts = sent["ts"].to_numpy(np.int64) + delay.astype(np.int64)
    # P(opened before the session ends); the int64 cut of the delay is immaterial
    in_time = DELAY.cdf(np.maximum(session_end - sent["ts"].to_numpy(np.int64), 0))
    visited = opened & (open_ts <= session_end) & (u[:, 2] < P_VISIT)
    reachable = channel != "in_app"
    unsubscribed = reachable & (u[:, 3] < 0.002 + 0.01 * tired)
    return sent.assign(opened=opened, open_ts=np.where(opened, open_ts, -1), visited=visited,
                       unsubscribed=unsubscribed, p_open=p_open,
                       p_visit=p_open * P_VISIT * in_time)  # fmt: skip
