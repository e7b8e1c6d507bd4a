"""The market: a synthetic world that reacts to what a policy does, with the truth known.

    from recsys.market import Market, MarketConfig, OraclePolicy, RandomPolicy

    market = Market(MarketConfig(preset="tiny", seed=0), "runs/market")
    market.run(RandomPolicy(seed=0))              # every day of the world
    kpis = daily_kpis(market.out)                 # CTR, CVR, GMV, coupon cost, true GMV

``env`` steps through days; ``policy`` is the interface a policy implements (``recommend``,
``grant_coupons``, ``notify``, ``observe``); ``checks`` refuses impossible answers;
``respond`` draws the viewers' responses to cards from the planted truth, ``messages`` their
responses to messages; ``coupons`` holds the catalogue and wallets; ``policies`` the reference
policies (``pipeline``: the trained pipeline as served); ``kpis`` the daily figures with
intervals (``recsys.ledger`` computes them over large logs).
"""

from recsys.market.coupons import DEFAULT_TIERS, CouponCatalogue, CouponTier
from recsys.market.env import Market, MarketConfig
from recsys.market.kpis import daily_kpis
from recsys.market.policies import OraclePolicy, PopularityPolicy, RandomPolicy, slates_by_score
from recsys.market.policy import (
    CouponGrants,
    DecisionError,
    MarketView,
    Messages,
    Policy,
    Requests,
    Slates,
)

__all__ = [
    "DEFAULT_TIERS",
    "CouponCatalogue",
    "CouponGrants",
    "CouponTier",
    "DecisionError",
    "Market",
    "MarketConfig",
    "MarketView",
    "Messages",
    "OraclePolicy",
    "Policy",
    "PopularityPolicy",
    "RandomPolicy",
    "Requests",
    "Slates",
    "daily_kpis",
    "slates_by_score",
]
