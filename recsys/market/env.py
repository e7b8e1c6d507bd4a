"""``Market``: a synthetic world that steps through days and reacts to a policy.

The world is the one ``recsys-simulate`` writes for the same preset and seed (same users,
streamers, products, schedule and planted truth), and its own behaviour (room visits,
in-room purchases, refunds) runs as there, day by day. On top of it, each day:

1. the policy grants coupons to viewers (``Policy.grant_coupons``), which land in wallets;
2. viewers open the app (``arrivals``) and the policy answers each request with a slate
   (``Policy.recommend``); every answer is checked first (``checks``);
3. viewers respond to the cards (``respond``): a clicked card takes them into the room (enter,
   click, maybe cart and purchase, leave), a purchase redeems the best applicable coupon;
4. the day's logs are written in the project's schema, atomically, and handed to
   ``Policy.observe``.

Logs in ``out_dir``: the entity tables and ``vocab/`` of a world folder, ``events/`` (organic and
market events, one part per day), ``requests/``, ``impressions/`` (cards shown and what the
viewer did), ``coupon_grants/``, ``coupon_redemptions/`` (from slates and message visits),
``messages/``, and ``truth/impressions/`` and ``truth/messages/`` (each card's true click and
purchase probabilities, with and without the coupon the viewer held; each message's true open
and visit probabilities). A day's files appear together with
its ``state/day-<d>.pkl``; a run that stops mid-way resumes after its last complete day and
ends with the same logs as an uninterrupted run (a learning policy is brought back by replaying
``observe`` over the logged days).
"""

from __future__ import annotations

import pickle
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from recsys.data.schema import TABLES
from recsys.data.tables import read_table, write_table
from recsys.data.vocab import save_vocabs, vocabs_from_frames
from recsys.market.arrivals import arrivals
from recsys.market.checks import check_grants, check_slates
from recsys.market.coupons import DEFAULT_TIERS, CouponCatalogue, Wallets
from recsys.market.logs import market_blocks
from recsys.market.messages import (
    CHANNELS,
    FATIGUE_DAYS,
    check_messages,
    day_triggers,
    fatigue,
    on_show,
    open_carts,
    planted_consent,
    respond_messages,
)
from recsys.market.policy import MarketView, Policy, Requests
from recsys.market.respond import Draws, respond
from recsys.privacy.consent import plant_opt_outs
from recsys.simulation.behaviour import assemble
from recsys.simulation.config import CHUNK_START_HOUR, SimConfig
from recsys.simulation.response import ResponseConfig, WorldTruth
from recsys.simulation.runner import CHUNK, SCHEDULE, WORLD, OrganicDays, _rng, entity_frames
from recsys.simulation.schedule import build_schedule
from recsys.simulation.truth import truth_tables
from recsys.simulation.visits import VisitModel
from recsys.simulation.world import build_world

MARKET = 3  # seed stream (MARKET, day, part): apart from the world's own streams
ARRIVALS, DRAWS, REFUNDS, MESSAGES, VISIT_DRAWS, CONSENT, DRIFT = 0, 1, 2, 3, 4, 5, 6
LOG_TABLES = ("events", "requests", "impressions", "coupon_grants", "coupon_redemptions",
              "messages", "truth/impressions", "truth/messages")  # fmt: skip
REDEMPTION_COLUMNS = ("grant_id", "ts", "user_id", "session_id", "product_id", "face_value")


@dataclass(frozen=True)
class MarketConfig:
    preset: str = "tiny"
    seed: int = 0
    n_days: int | None = None  # days the world runs (default: the preset's)
    slate_size: int = 10
    open_rate: float = 1.0  # app openings per viewer-day, times the viewer's activity
    # Interest drift: each day every viewer's interests move this share of the way towards a
    # freshly drawn interest mix (0: a stationary world, as recsys-simulate writes it).
    drift: float = 0.0
    # Days before this one are the world's own, as recsys-simulate wrote them (no policy, no
    # logs, no drift): a policy trained on a world's first days acts only after them.
    start_day: int = 0
    # Seed of the market's own draws (arrivals, responses, refunds, messages, consent, drift);
    # None: ``seed``. Replications of one experiment on one world vary it alone.
    draw_seed: int | None = None
    catalogue: CouponCatalogue = DEFAULT_TIERS
    response: ResponseConfig = field(default_factory=ResponseConfig)
    # Share of viewers who withheld every purpose (personalisation, coupons, each channel),
    # drawn apart from every other stream, so 0 leaves a market's draws as they were.
    opt_out_share: float = 0.0

    # Newcomers of the world (``SimConfig``): shares of users and streamers who arrive during
    # the run; a policy trained before they came knows nothing of them.
    new_user_share: float = 0.0
    new_streamer_share: float = 0.0

    def world_overrides(self) -> dict:
        """The ``SimConfig`` fields this market's world differs from its preset in."""
        extra = {"n_days": self.n_days} if self.n_days else {}
        for name in ("new_user_share", "new_streamer_share"):
            if getattr(self, name):
                extra[name] = getattr(self, name)
        return extra

    def sim_config(self) -> SimConfig:
        return SimConfig.from_preset(self.preset, seed=self.seed, **self.world_overrides())


@dataclass
class _State:
    """What one day hands the next."""

    day: int  # next day to run
    organic: dict
    wallets: Wallets
    consent: pd.DataFrame  # user_id and a bool column per channel
    # int64 from the start: a float column would round 64-bit viewer ids and lose the fatigue.
    sent: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"user_id": np.zeros(0, np.int64), "ts": np.zeros(0, np.int64)}))  # fmt: skip
    carts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {c: np.zeros(0, np.int64) for c in ("user_id", "product_id", "ts")}))  # fmt: skip
    next_request: int = 0
    next_grant: int = 0
    next_trigger: int = 0
    next_message: int = 0


class Market:
    def __init__(self, config: MarketConfig, out_dir: str | Path) -> None:
        self.config, self.out = config, Path(out_dir)
        sim = config.sim_config()
        world = build_world(sim, _rng(sim, WORLD))
        # The market's own copy of the interests: drift moves them day by day.
        users = replace(world.users, interest=world.users.interest.copy())
        self.world = replace(world, users=users)
        self.schedule = build_schedule(sim, self.world, _rng(sim, SCHEDULE))
        frames = entity_frames(self.world, self.schedule)
        truth = WorldTruth.from_frames(
            products=frames["products"], live_sessions=frames["live_sessions"],
            showcase=frames["showcase"], truth=truth_tables(self.world, self.schedule),
        )  # fmt: skip
        self.truth = replace(truth, interest=truth.interest.copy())
        self.view = MarketView(frames, config.catalogue)
        category = {c: i for i, c in enumerate(self.truth.categories)}
        self.streamer_category = frames["streamers"]["category"].map(category).to_numpy(np.int64)
        self.frames = frames
        self.organic = OrganicDays(self.world, self.schedule)
        # Truth rows in world order: the planted response reads the world's interests.
        self.truth_rows = pd.Index(self.truth.users).get_indexer(self.world.users.pseudonym)
        consent = self._consent(planted_consent(self.world.users.pseudonym,
                                                self._rng(0, CONSENT)))  # fmt: skip
        self.state = _State(0, self._organic_state(), Wallets(), consent)
        self.view.consent = consent

    @property
    def n_days(self) -> int:
        return self.world.config.n_days

    def _consent(self, channels: pd.DataFrame) -> pd.DataFrame:
        """The planted channel consents, with ``personalisation`` and ``coupons`` columns, and
        the planted opt-outs (``opt_out_share``) withholding everything."""
        seed = self.config.seed if self.config.draw_seed is None else self.config.draw_seed
        self.opt_outs = plant_opt_outs(channels["user_id"], share=self.config.opt_out_share,
                                       seed=seed)  # fmt: skip
        out = channels.assign(personalisation=True, coupons=True)
        opted = out["user_id"].isin(self.opt_outs.withheld("personalisation")).to_numpy()
        out.loc[opted, list(CHANNELS) + ["personalisation", "coupons"]] = False
        return out

    def _rng(self, day: int, part: int) -> np.random.Generator:
        seed = self.config.seed if self.config.draw_seed is None else self.config.draw_seed
        seq = np.random.SeedSequence(seed, spawn_key=(MARKET, day, part))
        return np.random.default_rng(seq)

    def _organic_state(self) -> dict:
        o = self.organic
        return {"follows": o.follows, "pending": o.pending, "next_id": o.next_id}

    # -- running -------------------------------------------------------------------------------

    def run(self, policy: Policy, days: int | None = None, *, progress: bool = False) -> list:
        """Run ``days`` more days (default: to the world's last), resuming after the last
        complete day in ``out_dir``; returns each run day's counts."""
        self._start(policy)
        self.burn_in()
        last = self.n_days if days is None else min(self.n_days, self.state.day + days)
        steps = range(self.state.day, last)
        return [self.step(policy, d) for d in tqdm(steps, desc="market", disable=not progress)]

    def _start(self, policy: Policy) -> None:
        """Pick up after the last complete day in ``out_dir`` (a new market object over a
        stopped run); a market that ran those days itself just goes on."""
        done = sorted(self.out.glob("state/day-*.pkl"))
        if not done:
            self._write_entities()
            return
        if self.state.day > int(done[-1].stem.split("-")[1]):
            return
        with open(done[-1], "rb") as f:
            self.state = pickle.load(f)
        self.view.consent = self.state.consent
        o = self.state.organic
        self.organic.follows, self.organic.pending, self.organic.next_id = (
            o["follows"], o["pending"], o["next_id"],
        )  # fmt: skip
        for day in range(self.config.start_day, self.state.day):
            self._drift(day)
            policy.observe(self.read_day(day))

    def burn_in(self) -> None:
        """The world's own days before ``start_day``: its state moves on, nothing is logged."""
        if self.state.day >= self.config.start_day:
            return
        for day in range(self.state.day, self.config.start_day):
            self.organic.frame(self.organic.events(day))  # numbers the day's events
        self.state.day, self.state.organic = self.config.start_day, self._organic_state()

    def _drift(self, day: int) -> None:
        """Move every viewer's interests towards a fresh mix (the world's own behaviour and the
        planted response read the same interests)."""
        if self.config.drift <= 0 or day <= self.config.start_day:
            return
        users = self.world.users
        fresh = self._rng(day, DRIFT).dirichlet(
            np.full(users.interest.shape[1], self.world.config.interest_concentration),
            size=len(users),
        )  # fmt: skip
        users.interest[:] = (1.0 - self.config.drift) * users.interest + self.config.drift * fresh
        self.truth.interest[self.truth_rows] = users.interest
        self.organic.model = VisitModel.build(self.world, CHUNK_START_HOUR)

    def step(self, policy: Policy, day: int) -> dict:
        """One day: coupons, requests and slates, responses, organic behaviour, logs."""
        if day != self.state.day:
            raise ValueError(f"market: day {day} asked, the next day to run is {self.state.day}")
        self._drift(day)
        s, name = self.state, getattr(policy, "name", type(policy).__name__)
        start = self.world.config.chunk_window(day)[0]
        viewers = self.frames["users"]["user_id"].to_numpy(np.int64)
        viewers = viewers[s.consent.set_index("user_id")["coupons"].reindex(viewers).to_numpy(bool)]
        grants = check_grants(name, policy.grant_coupons(viewers, day, self.view), self.view,
                              start, s.next_grant)  # fmt: skip
        user, ts = arrivals(self.world, self.schedule, day, self.config.open_rate,
                            self._rng(day, ARRIVALS))  # fmt: skip
        ids = np.arange(s.next_request, s.next_request + len(user), dtype=np.int64)
        requests = Requests(ids, self.world.users.pseudonym[user], ts, self.config.slate_size)
        shown = check_slates(name, requests, policy.recommend(requests, self.view), self.view)
        window = self.world.config.chunk_window(day)
        triggers = day_triggers(
            self.organic.follows.keys,
            len(self.world.streamers.kol),
            s.carts,
            self.view,
            window,
            self.world.users.pseudonym,
            s.next_trigger,
        )
        sent = check_messages(name, policy.notify(triggers, self.view), triggers, s.consent,
                              window)  # fmt: skip
        # Checks passed: from here on the day happens.
        s.wallets.add(grants)
        draws = Draws.of_day(self._rng(day, DRAWS), len(requests), requests.k)
        outcomes = respond(self.truth, shown, (shown["request_id"] - s.next_request).to_numpy(),
                           draws, s.wallets, self.config.response)  # fmt: skip
        messages, visits = self._messages(day, sent)
        s.wallets.expire(window[1])
        logs = self._day_logs(day, requests, outcomes, grants, messages, visits)
        s.day, s.next_grant = day + 1, s.next_grant + len(grants)
        s.next_request += len(ids)
        s.next_trigger += len(triggers)
        s.next_message += len(sent)
        s.carts = open_carts(s.carts, logs["events"])
        s.organic = self._organic_state()
        self._write_day(day, logs)
        policy.observe(logs)
        return {k: len(v) for k, v in logs.items()}

    def _messages(self, day: int, sent: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(messages with their outcomes, the visits they bring as responded cards)."""
        s, t = self.state, self.truth
        user = t.users.get_indexer(sent["user_id"].to_numpy(np.int64))
        streamer = sent["streamer_id"].to_numpy(np.int64)
        category = self.streamer_category[streamer]
        relevance = t.interest[user, category] + t.trust(user, t.streamers.get_indexer(streamer))
        ts = sent["ts"].to_numpy(np.int64)
        hour = (ts // 3600 + self.world.config.utc_offset_hours) % 24
        tired = fatigue(s.sent["user_id"].to_numpy(np.int64), s.sent["ts"].to_numpy(np.int64),
                        sent["user_id"].to_numpy(np.int64), ts)  # fmt: skip
        end = t.session_end[t.sessions.get_indexer(sent["session_id"].to_numpy(np.int64))]
        rows = respond_messages(sent, relevance, self.world.users.hours[user, hour], tired, end,
                                self._rng(day, MESSAGES))  # fmt: skip
        rows.insert(0, "message_id", np.arange(s.next_message, s.next_message + len(rows)))
        # Only the last FATIGUE_DAYS of messages ever count towards fatigue.
        recent = s.sent.loc[s.sent["ts"] >= self.world.config.chunk_window(day)[0]
                            - FATIGUE_DAYS * 86_400]  # fmt: skip
        s.sent = pd.concat([recent, rows[["user_id", "ts"]]], ignore_index=True)
        for channel, group in rows.loc[rows["unsubscribed"]].groupby("channel"):
            s.consent.loc[s.consent["user_id"].isin(group["user_id"]), channel] = False
        return rows, self._visit_cards(day, rows.loc[rows["visited"]])

    def _visit_cards(self, day: int, visits: pd.DataFrame) -> pd.DataFrame:
        """Each message visit as a responded card: the product on show when it enters its room
        (a visit between two presented products enters and leaves without one)."""
        # Into the room when the trigger's moment comes: the session's start, or the carted
        # product's slot.
        enter = np.maximum(visits["open_ts"].to_numpy(np.int64), visits["start_ts"].to_numpy())
        product = on_show(self.view, visits["session_id"].to_numpy(np.int64), enter)
        cards = pd.DataFrame({"request_id": visits["message_id"].to_numpy(np.int64),
                              "user_id": visits["user_id"].to_numpy(np.int64), "ts": enter,
                              "position": 0, "session_id": visits["session_id"].to_numpy(),
                              "streamer_id": visits["streamer_id"].to_numpy(),
                              "product_id": product}).sort_values("ts", kind="stable",
                                                                  ignore_index=True)  # fmt: skip
        shown = cards.loc[cards["product_id"] >= 0]
        draws = Draws.of_day(self._rng(day, VISIT_DRAWS), len(visits), 1)
        row = pd.Index(visits["message_id"]).get_indexer(shown["request_id"])
        out = respond(self.truth, shown, row, draws, self.state.wallets, self.config.response)
        bare = cards.loc[cards["product_id"] < 0].assign(click=False, cart=False,
                                                         purchase=False, amount=0.0,
                                                         coupon_value=0.0, grant_id=-1)  # fmt: skip
        return pd.concat([out, bare], ignore_index=True).sort_values("ts", kind="stable")

    def _day_logs(self, day, requests: Requests, outcomes: pd.DataFrame, grants,
                  messages: pd.DataFrame, visits: pd.DataFrame) -> dict:  # fmt: skip
        blocks = self.organic.blocks(day)
        user_index = pd.Index(self.world.users.pseudonym)
        rng = self._rng(day, REFUNDS)
        for frame, is_visit in ((outcomes, False), (visits, True)):
            market, refunds = market_blocks(frame, user_index, self.truth, rng, visits=is_visit)
            self.organic.defer(refunds)
            for kind, b in market.items():
                blocks[kind] = {k: np.concatenate([blocks[kind][k], b[k]]) for k in b} \
                    if kind in blocks else b  # fmt: skip
        events = self.organic.frame(assemble(blocks | {"refund": self.organic.due(day)}))
        req = pd.DataFrame({"request_id": requests.request_id, "ts": requests.ts,
                            "user_id": requests.user_id})  # fmt: skip
        truth_cols = ["request_id", "position", "p_click", "p_buy", "p_buy_no_grant", "price"]
        shown = outcomes.drop(columns=["p_click", "p_buy", "p_buy_no_grant", "price"])
        truth_msg = ["message_id", "p_open", "p_visit"]
        cards = pd.concat([outcomes, visits], ignore_index=True)
        used = cards.loc[cards["purchase"].to_numpy(bool) & (cards["grant_id"] >= 0)]
        redeemed = used.rename(columns={"coupon_value": "face_value"})[list(REDEMPTION_COLUMNS)]
        return {"events": events, "requests": req, "impressions": shown,
                "coupon_grants": grants, "coupon_redemptions": redeemed.sort_values("ts"),
                "messages": messages.drop(columns=truth_msg[1:]),
                "truth/impressions": outcomes[truth_cols],
                "truth/messages": messages[truth_msg]}  # fmt: skip

    # -- files ---------------------------------------------------------------------------------

    def _write_entities(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for name, df in self.frames.items():
            write_table(df, self.out / f"{name}.parquet", TABLES[name])
        save_vocabs(vocabs_from_frames(self.frames), self.out / "vocab")
        if len(self.opt_outs.table()):
            self.opt_outs.write(self.out)

    def _write_day(self, day: int, logs: dict[str, pd.DataFrame]) -> None:
        """Every file of the day beside its final place, then moved, then the state (the
        day's commit mark)."""
        tmp = self.out / f".day-{day:05d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for table, df in logs.items():
            path = tmp / table / f"part-{day:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            if table == "events":
                write_table(df, path, TABLES["events"])
            else:
                df.to_parquet(path, index=False)
        for table in logs:
            final = self.out / table / f"part-{day:05d}.parquet"
            final.parent.mkdir(parents=True, exist_ok=True)
            (tmp / table / final.name).replace(final)
        state = self.out / "state" / f"day-{day:05d}.pkl"
        state.parent.mkdir(parents=True, exist_ok=True)
        with open(state.with_suffix(".tmp"), "wb") as f:
            pickle.dump(self.state, f)
        state.with_suffix(".tmp").replace(state)
        shutil.rmtree(tmp, ignore_errors=True)

    def read_day(self, day: int) -> dict[str, pd.DataFrame]:
        """The logs of a complete day."""
        out = {}
        for table in LOG_TABLES:
            path = self.out / table / f"part-{day:05d}.parquet"
            out[table] = (read_table(path, TABLES["events"]) if table == "events"
                          else pd.read_parquet(path))  # fmt: skip
        return out


__all__ = ["CHUNK", "Market", "MarketConfig"]
