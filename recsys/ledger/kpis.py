"""The SQL of the daily KPIs, and their 95% intervals over user-days.

Everything is computed in DuckDB. First a table of *units*, one row per (day, user) that did
anything the KPIs count that day: requested a slate (a *viewer*), saw cards, bought, was
refunded or was sent a message. Its columns are that user's totals of the day, so the table is
bounded by users x days whatever the size of the logs; it is built a day at a time from that
day's parts (``day_units_sql``), so building it holds one day of logs. The KPIs are sums over
units:

- ``viewers`` distinct users with a request; ``requests``; ``impressions`` cards shown;
  ``clicks``; ``slate_orders`` cards bought from (purchases that came from a slate);
- ``orders`` purchase events, all of them (slates, message visits, the world's own);
  ``gmv`` their list value (``amount`` paid + ``coupon_value`` taken off, NaN counts 0);
  ``paid`` their ``amount``; ``refunds`` the ``amount`` of the day's refund events;
  ``slate_gmv`` the list value of the slate purchases; ``true_gmv`` the expected list value of
  the cards shown (sum of ``p_click * p_buy * price`` from ``truth/impressions``);
- ``coupon_cost`` face value of the granted coupons redeemed (``coupon_redemptions``: on slates
  and in rooms that messages brought viewers to; a run without that table counts the slates'
  impressions with ``purchase`` and ``grant_id >= 0``); the room's own coupon drops are not the
  platform's cost;
  ``message_cost`` the ``cost`` of the messages sent (0 when the run logged no ``messages/``);
  ``marketing_cost`` their sum;
- ``new_buyers`` users whose first purchase event in the logs falls on that day (the logs
  begin with the run, so a buyer from before it counts as new on their first logged purchase:
  early days over-count new buyers and under-state CAC).

Ratios, each a ratio of sums with a delta-method interval over its units (user-days):
``ctr`` clicks / impressions and ``cvr`` slate_orders / clicks (units: viewers), ``aov`` gmv /
orders, ``refund_rate`` refunds / paid (refunds logged that day over what was paid that day:
a ratio of the day's flows, not a cohort's share), ``roi`` (gmv - marketing_cost) /
marketing_cost and ``cac`` marketing_cost / new_buyers (units: every user with a row that day).
``roi`` relates all of the day's GMV to the day's marketing cost: it is not the incremental
return, which needs arms (compare the arms' KPIs). Means over viewers with normal intervals,
viewers without cards counting 0: ``slate_gmv_per_viewer``, ``true_gmv_per_viewer``.

A ratio with a zero denominator (or a mean over no viewers) is NaN with ``<name>_estimable``
False; an interval needs two units at least (NaN otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Ratio:
    """``num / den`` summed over units; ``viewers_only`` restricts the units to viewers."""

    name: str
    num: str
    den: str
    viewers_only: bool
    shift: float = 0.0  # added to the ratio: ROI = gmv / cost - 1


RATIOS = (
    Ratio("ctr", "clicks", "impressions", True),
    Ratio("cvr", "slate_orders", "clicks", True),
    Ratio("aov", "gmv", "orders", False),
    Ratio("refund_rate", "refunds", "paid", False),
    Ratio("roi", "gmv", "marketing_cost", False, shift=-1.0),
    Ratio("cac", "marketing_cost", "new_buyers", False),
)
MEANS = (("slate_gmv_per_viewer", "slate_gmv"), ("true_gmv_per_viewer", "true_gmv"))
COUNTS = ("requests", "impressions", "clicks", "slate_orders", "orders", "new_buyers")
AMOUNTS = ("gmv", "paid", "refunds", "slate_gmv", "true_gmv", "coupon_cost", "message_cost",
           "marketing_cost")  # fmt: skip
UNIT_COLUMNS = ("day", "user_id", "viewer", *COUNTS, *AMOUNTS)

NZ_MACRO = "CREATE OR REPLACE MACRO nz(x) AS coalesce(CASE WHEN isnan(x) THEN 0 ELSE x END, 0)"

# One day's parts of the units, each reading only that day's files: DuckDB prunes the parts by
# the day in their names, so a day's working set is one day of logs however long the run.
_PARTS = """
req AS (SELECT user_id, count(*) AS requests FROM requests WHERE day = {day} GROUP BY user_id),
imp AS (
    SELECT i.user_id, count(*) AS impressions,
           count(*) FILTER (WHERE i.click) AS clicks,
           count(*) FILTER (WHERE i.purchase) AS slate_orders,
           sum(CASE WHEN i.purchase THEN i.amount + nz(i.coupon_value) ELSE 0 END) AS slate_gmv,
           sum(t.p_click * t.p_buy * t.price) AS true_gmv,
           count(*) FILTER (WHERE t.request_id IS NULL) AS orphans
    FROM (SELECT * FROM impressions WHERE day = {day}) i
    LEFT JOIN (SELECT * FROM truth_impressions WHERE day = {day}) t
        ON t.request_id = i.request_id AND t.position = i.position
    GROUP BY i.user_id),
ev AS (
    SELECT user_id,
           count(*) FILTER (WHERE event_type = 'purchase') AS orders,
           coalesce(sum(amount + nz(coupon_value)) FILTER (WHERE event_type = 'purchase'), 0)
               AS gmv,
           coalesce(sum(amount) FILTER (WHERE event_type = 'purchase'), 0) AS paid,
           coalesce(sum(amount) FILTER (WHERE event_type = 'refund'), 0) AS refunds
    FROM events WHERE day = {day} AND event_type IN ('purchase', 'refund') GROUP BY user_id),
"""
_REDEEMED = """red AS (SELECT user_id, sum(nz(face_value)) AS coupon_cost
    FROM coupon_redemptions WHERE day = {day} GROUP BY user_id)"""
_REDEEMED_ON_SLATES = """red AS (SELECT user_id, sum(nz(coupon_value)) AS coupon_cost
    FROM impressions WHERE day = {day} AND purchase AND grant_id >= 0 GROUP BY user_id)"""
_MESSAGES = """msg AS (SELECT user_id, sum(nz(cost)) AS message_cost
    FROM messages WHERE day = {day} GROUP BY user_id)"""
_NO_MESSAGES = "msg AS (SELECT 0::BIGINT AS user_id, 0.0 AS message_cost WHERE false)"
_DAY_COLUMNS = tuple(c for c in (*COUNTS, *AMOUNTS) if c not in ("new_buyers", "marketing_cost"))


def day_units_sql(day: int, has_messages: bool, has_redemptions: bool = True) -> str:
    """A query of day ``day``'s units (``new_buyers`` aside: it needs every day, see
    ``units_sql``), with ``orphans``: the cards without a ``truth/impressions`` row. Without a
    ``coupon_redemptions`` table, coupons count where slates redeemed them."""
    parts = ("req", "imp", "ev", "red", "msg")
    keys = " UNION ".join(f"SELECT user_id FROM {p}" for p in parts)
    joins = " ".join(f"LEFT JOIN {p} USING (user_id)" for p in parts)
    columns = ", ".join(f"coalesce({c}, 0) AS {c}" for c in (*_DAY_COLUMNS, "orphans"))
    ctes = (_PARTS + (_REDEEMED if has_redemptions else _REDEEMED_ON_SLATES) + ",\n"
            + (_MESSAGES if has_messages else _NO_MESSAGES)).format(day=int(day))  # fmt: skip
    return f"""
        WITH {ctes},
        keys AS ({keys})
        SELECT {int(day)} AS day, user_id, req.requests IS NOT NULL AS viewer, {columns},
               coalesce(coupon_cost, 0) + coalesce(message_cost, 0) AS marketing_cost
        FROM keys {joins}
    """


def units_sql(days_table: str) -> str:
    """The statement that builds the temporary ``units`` table (one row per day and user) from
    ``days_table`` (the days' units, ``day_units_sql``) and each buyer's first purchase day
    (a day on which the buyer has a unit: their orders that day)."""
    columns = ", ".join(
        "(f.user_id IS NOT NULL)::BIGINT AS new_buyers" if c == "new_buyers" else f"d.{c}"
        for c in (*COUNTS, *AMOUNTS)
    )
    return f"""
        CREATE OR REPLACE TEMP TABLE units AS
        WITH first_buy AS (
            SELECT user_id, min(day) AS day FROM events WHERE event_type = 'purchase'
            GROUP BY user_id)
        SELECT d.day, d.user_id, d.viewer, {columns}
        FROM {days_table} d LEFT JOIN first_buy f ON f.day = d.day AND f.user_id = d.user_id
    """


def _unit_expressions() -> list[str]:
    """Per unit: each ratio's numerator and denominator (NULL outside its units) and each
    mean's value (NULL for non-viewers)."""
    out = []
    for r in RATIOS:
        for part, column in (("y", r.num), ("x", r.den)):
            value = f"CASE WHEN viewer THEN {column} END" if r.viewers_only else column
            out.append(f"{value} AS {r.name}__{part}")
    out += [f"CASE WHEN viewer THEN {column} END AS {name}__v" for name, column in MEANS]
    return out


def _aggregates() -> list[str]:
    """Per group: totals, and for each ratio its sums and sqrt(n) x the standard deviation of
    the residuals y - R x (the delta method's variance of a ratio of sums)."""
    out = ["count(*) FILTER (WHERE viewer) AS viewers"]
    out += [f"sum({c})::BIGINT AS {c}" for c in COUNTS]
    out += [f"sum({c})::DOUBLE AS {c}" for c in AMOUNTS]
    for r in RATIOS:
        n = r.name
        out += [
            f"sum({n}__y)::DOUBLE AS {n}__num",
            f"sum({n}__x)::DOUBLE AS {n}__den",
            f"stddev_samp({n}__y - {n}__r * {n}__x) * sqrt(count({n}__x)) AS {n}__sd",
        ]
    for name, _ in MEANS:
        out += [f"avg({name}__v) AS {name}", f"count({name}__v) AS {name}__n",
                f"stddev_samp({name}__v) / sqrt(count({name}__v)) AS {name}__se"]  # fmt: skip
    return out


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (a segment column may be named anything)."""
    return '"' + name.replace('"', '""') + '"'


def kpi_sql(groups: dict[str, str], joins: str) -> str:
    """The grouped KPI query over ``units``: ``groups`` maps output names to SQL expressions
    (over ``units u`` and the tables in ``joins``)."""
    selects = "".join(f", {expr} AS {ident(name)}" for name, expr in groups.items())
    keys = ", ".join(ident(k) for k in ("day", *groups))
    ratios = ", ".join(
        f"sum({r.name}__y) OVER w / nullif(sum({r.name}__x) OVER w, 0) AS {r.name}__r"
        for r in RATIOS
    )
    return f"""
        WITH g AS (SELECT u.*{selects} FROM units u {joins}),
        x AS (SELECT g.*, {", ".join(_unit_expressions())} FROM g),
        r AS (SELECT x.*, {ratios} FROM x WINDOW w AS (PARTITION BY {keys}))
        SELECT {keys}, {", ".join(_aggregates())}
        FROM r GROUP BY {keys} ORDER BY {keys} NULLS LAST
    """


def finish(raw: pd.DataFrame) -> pd.DataFrame:
    """Point estimates, 95% intervals and estimability flags from the query's sums."""
    out = raw.copy()
    for r in RATIOS:
        num, den, sd = (out.pop(f"{r.name}__{k}").to_numpy(float) for k in ("num", "den", "sd"))
        ok = np.nan_to_num(den) != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(ok, num / den + r.shift, np.nan)
            half = np.where(ok, Z95 * sd / den, np.nan)
        _put(out, r.name, value, half, ok)
    for name, _ in MEANS:
        n, se = out.pop(f"{name}__n").to_numpy(int), out.pop(f"{name}__se").to_numpy(float)
        value = np.where(n > 0, out.pop(name).to_numpy(float), np.nan)
        _put(out, name, value, Z95 * se, n > 0)
    return out


def _put(out: pd.DataFrame, name: str, value: np.ndarray, half: np.ndarray, ok: np.ndarray):
    out[name], out[f"{name}_lo"], out[f"{name}_hi"] = value, value - half, value + half
    out[f"{name}_estimable"] = ok
