"""The KPI ledger: daily KPIs and customer lifetime value from a market run's Parquet logs.

    from recsys.ledger import Ledger

    with Ledger("runs/market", memory_limit="1GB", threads=2) as ledger:
        daily = ledger.daily()                           # a row per day
        by_arm = ledger.daily(arms=assignment, segment="age_band")
        ltv = ledger.ltv(horizon=30)                     # BG/NBD x Gamma-Gamma per buyer

Everything is computed by DuckDB SQL over the ``<table>/part-*.parquet`` globs, so memory stays
within DuckDB's ``memory_limit`` however long the run; only the small answers come back as
pandas frames. ``kpis`` defines every KPI and its interval (ratios by the delta method, means
by the normal interval, the viewer-day as the unit; zero denominators are NaN and flagged
``<kpi>_estimable`` False); ``ltv`` the lifetime value models; ``ledger`` the ``Ledger``.
"""

from recsys.ledger.kpis import MEANS, RATIOS, Z95
from recsys.ledger.ledger import Ledger
from recsys.ledger.ltv import BgNbd, GammaGamma, Ltv

__all__ = ["MEANS", "RATIOS", "Z95", "BgNbd", "GammaGamma", "Ledger", "Ltv"]
