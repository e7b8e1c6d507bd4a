"""``Ledger``: a DuckDB connection over a market run's Parquet logs, and the KPIs it answers.

The logs are read where they lie, through views over ``<table>/part-*.parquet`` globs (the day
is the number in each part's name), so memory is DuckDB's, bounded by ``memory_limit`` (it
spills to ``temp_directory`` past it). The per-user table of each day is built from that day's
parts alone (DuckDB skips the other files), so the working set is one day of logs, not the
run: the card-to-truth join never spills however many days are logged. Only the small answers
(a row per day and group, a row per buyer for LTV) come back to pandas.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.ledger import kpis
from recsys.ledger.ltv import Ltv, fit_ltv

# The fields each log table must have for the ledger to read it.
REQUIRED = {
    "events": ("ts", "user_id", "event_type", "amount", "coupon_value"),
    "requests": ("request_id", "user_id"),
    "impressions": ("request_id", "user_id", "position", "click", "purchase", "amount",
                    "coupon_value", "grant_id"),
    "truth/impressions": ("request_id", "position", "p_click", "p_buy", "price"),
}  # fmt: skip
# Runs without messages have no message cost; without redemptions, coupons count on slates.
OPTIONAL = {"messages": ("user_id", "cost"), "coupon_redemptions": ("user_id", "face_value")}


PART = re.compile(r"part-(\d+)\.parquet")


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class Ledger:
    """KPIs of the market run logged in ``folder`` (see ``recsys.ledger.kpis`` for their
    definitions). ``memory_limit`` and ``threads`` are DuckDB's settings; use as a context
    manager or call ``close``."""

    def __init__(
        self,
        folder: str | Path,
        *,
        memory_limit: str = "1GB",
        threads: int = 1,
        temp_directory: str | Path | None = None,
    ) -> None:
        self.folder, self.days = Path(folder), set()
        if not self.folder.is_dir():
            raise FileNotFoundError(f"ledger: {self.folder}: no such run folder")
        config = {"memory_limit": memory_limit, "threads": threads,
                  "preserve_insertion_order": False}  # fmt: skip
        if temp_directory is not None:
            config["temp_directory"] = str(temp_directory)
        self.con = duckdb.connect(config=config)
        self.con.execute(kpis.NZ_MACRO)
        for table, fields in REQUIRED.items():
            self._view(table, fields)
        present = {t: self._view(t, f, optional=True) for t, f in OPTIONAL.items()}
        self.has_messages, self.has_redemptions = present["messages"], present["coupon_redemptions"]
        self._units = False

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sources -------------------------------------------------------------------------------

    def _view(self, table: str, fields: tuple[str, ...], optional: bool = False) -> bool:
        """A view ``table`` (``/`` read as ``_``) over the table's parts, with their ``day``;
        False for an optional table the run did not log."""
        folder = self.folder / table
        if optional and not folder.exists():
            return False
        parts = sorted(folder.glob("part-*.parquet"))
        if not parts:
            raise FileNotFoundError(f"ledger: table {table!r}: no part-*.parquet in {folder}")
        for part in parts:  # footers only: a part without a field would read as NULLs
            if not PART.fullmatch(part.name):
                raise ValueError(f"ledger: table {table!r}: {part}: not named part-<day>.parquet")
            missing = [f for f in fields if f not in pq.read_schema(part).names]
            if missing:
                raise ValueError(f"ledger: table {table!r}: {part}: missing field(s) {missing}")
            self.days.add(int(PART.fullmatch(part.name).group(1)))
        name, glob = table.replace("/", "_"), _quote(folder / "part-*.parquet")
        self.con.execute(f"""
            CREATE OR REPLACE VIEW {name} AS
            SELECT * EXCLUDE (filename),
                   CAST(regexp_extract(filename, 'part-(\\d+)\\.parquet$', 1) AS INTEGER) AS day
            FROM read_parquet({glob}, filename = true, union_by_name = true)
        """)  # fmt: skip
        return True

    def _require(self, relation: str, fields: tuple[str, ...], where: str) -> None:
        """Refuse a table that lacks a field the ledger reads, naming both."""
        have = {row[0] for row in self.con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
        missing = [f for f in fields if f not in have]
        if missing:
            raise ValueError(f"ledger: {where}: missing field(s) {missing}; has {sorted(have)}")

    def _unique(self, relation: str, where: str) -> None:
        """Refuse a user mapping that names a user twice: joined to the units, it would count
        their day twice (or in two arms)."""
        twice = self.con.execute(
            f"SELECT user_id FROM {relation} GROUP BY user_id HAVING count(*) > 1 LIMIT 5"
        ).fetchall()
        if twice:
            raise ValueError(f"ledger: {where}: user_id(s) named twice: {[r[0] for r in twice]}")

    def _use_arms(self, arms: pd.DataFrame | str | Path) -> None:
        """Register the caller's user -> arm mapping (a frame or a Parquet file) as ``arms``."""
        if isinstance(arms, pd.DataFrame):
            where, source = "arms frame", "arms_frame"
            missing = [c for c in ("user_id", "arm") if c not in arms.columns]
            if missing:
                raise ValueError(f"ledger: {where}: missing field(s) {missing}")
            table = pa.Table.from_pandas(arms[["user_id", "arm"]], preserve_index=False)
            self.con.register(source, table)
        else:
            where, source = str(arms), "arms_file"
            if not Path(arms).is_file():
                raise FileNotFoundError(f"ledger: arms file {arms}: not found")
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {source} AS "
                             f"SELECT * FROM read_parquet({_quote(Path(arms))})")  # fmt: skip
            self._require(source, ("user_id", "arm"), where)
        self.con.execute(f"""CREATE OR REPLACE TEMP VIEW arms AS
            SELECT CAST(user_id AS BIGINT) AS user_id, CAST(arm AS VARCHAR) AS arm FROM {source}""")
        self._unique("arms", where)

    def _use_segment(self, segment: str) -> None:
        """Register ``users.parquet`` as ``users`` and check it has the ``segment`` column."""
        path = self.folder / "users.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"ledger: {path}: no users table to segment by")
        if segment in kpis.UNIT_COLUMNS or segment == "arm":
            raise ValueError(f"ledger: segment {segment!r} is a KPI column name; rename it")
        self.con.execute(
            f"CREATE OR REPLACE VIEW users AS SELECT * FROM read_parquet({_quote(path)})"
        )
        self._require("users", ("user_id", segment), str(path))
        self._unique("users", str(path))

    # -- answers -------------------------------------------------------------------------------

    def _build_units(self) -> None:
        """Build the per (day, user) table once, a day at a time (``kpis.day_units_sql``)."""
        if self._units:
            return
        for i, day in enumerate(sorted(self.days)):
            query = kpis.day_units_sql(day, self.has_messages, self.has_redemptions)
            self.con.execute(("CREATE OR REPLACE TEMP TABLE day_units AS " if i == 0
                              else "INSERT INTO day_units ") + query)  # fmt: skip
        self._check_truth()
        self.con.execute(kpis.units_sql("day_units"))
        self.con.execute("DROP TABLE day_units")
        self._units = True

    def _check_truth(self) -> None:
        """Every card needs its truth row, or the true GMV would be silently short."""
        bad = self.con.execute("""
            SELECT day, sum(orphans)::BIGINT FROM day_units GROUP BY day
            HAVING sum(orphans) > 0 ORDER BY day
        """).fetchall()  # fmt: skip
        if bad:
            where = self.folder / "truth/impressions" / f"part-{bad[0][0]:05d}.parquet"
            raise ValueError(
                f"ledger: {where}: no row for {bad[0][1]} impression(s) of its day"
                f" ({sum(n for _, n in bad)} on {len(bad)} day(s) in all)"
            )

    def daily(
        self, arms: pd.DataFrame | str | Path | None = None, segment: str | None = None
    ) -> pd.DataFrame:
        """One row per day (and per arm, and per value of the users' ``segment`` column, when
        given): totals, ratios and means with 95% intervals and ``<kpi>_estimable`` flags.
        ``arms``: columns ``user_id`` and ``arm``; users it does not name get arm NaN."""
        self._build_units()
        groups, joins = {}, ""
        if arms is not None:
            self._use_arms(arms)
            groups["arm"], joins = "a.arm", joins + " LEFT JOIN arms a ON a.user_id = u.user_id"
        if segment is not None:
            self._use_segment(segment)
            groups[segment] = f"s.{kpis.ident(segment)}"
            joins += " LEFT JOIN users s ON s.user_id = u.user_id"
        return kpis.finish(self.con.execute(kpis.kpi_sql(groups, joins)).df())

    def ltv(
        self, horizon: float = 30.0, period_s: int = 86_400, value: str = "paid",
        end_ts: int | None = None,
    ) -> Ltv:  # fmt: skip
        """Predicted value of each buyer over the next ``horizon`` periods of ``period_s``
        seconds, by BG/NBD and Gamma-Gamma (``recsys.ledger.ltv``) fitted on the purchase
        events up to ``end_ts`` (default: the last logged event)."""
        return fit_ltv(self.con, horizon=horizon, period_s=period_s, value=value, end_ts=end_ts)
