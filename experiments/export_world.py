"""Export a world as a platform might hold it, to try ``recsys-ingest`` on (the README example).

    python experiments/export_world.py --world ~/.cache/recsys/worlds/tiny-0 --out raw/ --format csv

Columns and event types get a platform's own names (``RENAMES``, ``EVENT_NAMES``), times are in
milliseconds and events are split into part files. Consent decisions (the world's
``consent.parquet``, or a seeded sample of withdrawals and re-grants when it has none) come as a
consent log with the platform's labels (``CONSENT_LABELS``: one label names purpose and channel)
and ``opt_in`` / ``opt_out`` values. ``recsys/conf/tables/example.yaml`` is the ingestion
mapping that reads this layout back (a test checks that the two agree):

    recsys-ingest tables=example source=raw/ out_dir=worlds/shop key=<secret>
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.ingest.export import export_consent, export_world
from recsys.data.tables import load_tables
from recsys.privacy.consent import CONSENT_FILE, ConsentBook

RENAMES = {
    "users": {"user_id": "account_id", "age_band": "age_group", "gender": "sex",
              "region": "province", "signup_ts": "register_time"},
    "streamers": {"streamer_id": "anchor_id", "category": "main_category",
                  "follower_count": "fans"},
    "products": {"product_id": "item_id", "category": "item_category", "imported": "is_import",
                 "keywords": "tags"},
    "live_sessions": {"session_id": "live_id", "streamer_id": "anchor_id",
                      "start_ts": "live_start", "end_ts": "live_end"},
    "showcase": {"session_id": "live_id", "product_id": "item_id", "start_ts": "explain_start",
                 "end_ts": "explain_end"},
    "events": {"event_id": "log_id", "ts": "log_time", "user_id": "account_id",
               "event_type": "action", "session_id": "live_id", "streamer_id": "anchor_id",
               "product_id": "item_id", "dwell_s": "stay_seconds", "amount": "pay_amount",
               "coupon_value": "coupon_amount", "comment": "content"},
}  # fmt: skip
EVENT_NAMES = {
    "enter": "enter_room", "leave": "exit_room", "comment": "send_comment", "like": "tap_like",
    "click": "click_item", "cart": "add_cart", "purchase": "pay_order", "refund": "refund_order",
    "coupon_claim": "get_coupon", "follow": "follow_anchor", "share": "share_room",
}  # fmt: skip
TIME_UNIT = "ms"
EVENTS_PER_FILE = 5_000
CONSENT_COLUMNS = {"user_id": "account_id", "purpose": "scene", "channel": None,
                   "granted": "status", "ts": "update_time"}  # fmt: skip
CONSENT_LABELS = {
    "personalisation": "个性化推荐", "coupons": "personalized_coupons",
    "marketing": "all_marketing", "marketing:sms": "sms_marketing",
    "marketing:push": "app_push", "marketing:in_app": "站内信",
}  # fmt: skip
GRANTED = {True: "opt_in", False: "opt_out"}


def export_example(world: str, out: str, fmt: str = "csv") -> dict:
    """Export ``world`` under ``out`` with the example naming; returns the reading mapping."""
    mapping = export_world(world, out, format=fmt, columns=RENAMES, event_names=EVENT_NAMES,
                           time_unit=TIME_UNIT, events_per_file=EVENTS_PER_FILE)  # fmt: skip
    mapping["consent"] = export_consent(
        world_decisions(world), out, format=fmt, columns=CONSENT_COLUMNS, labels=CONSENT_LABELS,
        granted=GRANTED, time_unit=TIME_UNIT,
    )  # fmt: skip
    return mapping


def world_decisions(world: str, share: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """The world's consent decisions; a world without any gets a seeded ``share`` of its viewers
    each withdrawing one purpose or marketing channel during its span, and every third of them
    granting it again a day later."""
    if (Path(world) / CONSENT_FILE).is_file():
        return ConsentBook.read(world).table()
    tables = load_tables(world)
    users = tables.users["user_id"].to_numpy(np.int64)
    rng = np.random.default_rng(seed)
    chosen = users[rng.random(len(users)) < share]
    keys = [k.partition(":") for k in CONSENT_LABELS]
    pick = rng.integers(len(keys), size=len(chosen))
    lo, hi = int(tables.events["ts"].min()), int(tables.events["ts"].max())
    ts = rng.integers(lo, max(hi, lo + 1), size=len(chosen))
    purposes, channels = [keys[i][0] for i in pick], [keys[i][2] for i in pick]
    out = pd.DataFrame({"user_id": chosen, "purpose": purposes, "channel": channels,
                        "granted": False, "ts": ts})  # fmt: skip
    again = out.iloc[::3].assign(granted=True, ts=out["ts"].iloc[::3] + 86_400)
    return pd.concat([out, again], ignore_index=True).sort_values("ts", kind="stable")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--world", required=True, help="a world folder (recsys-simulate's)")
    p.add_argument("--out", required=True, help="where the raw tables go")
    p.add_argument("--format", default="csv", choices=("csv", "jsonl", "parquet"))
    args = p.parse_args()
    print(json.dumps(export_example(args.world, args.out, args.format), indent=2))


if __name__ == "__main__":
    main()
