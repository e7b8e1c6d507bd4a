"""Export a world as a platform might hold it, to try ``recsys-ingest`` on (the README example).

    python experiments/export_world.py --world ~/.cache/recsys/worlds/tiny-0 --out raw/ --format csv

Columns and event types get a platform's own names (``RENAMES``, ``EVENT_NAMES``), times are in
milliseconds and events are split into part files; ``recsys/conf/tables/example.yaml`` is the
ingestion mapping that reads this layout back (a test checks that the two agree):

    recsys-ingest tables=example source=raw/ out_dir=worlds/shop key=<secret>
"""

from __future__ import annotations

import argparse
import json

from recsys.data.ingest.export import export_world

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


def export_example(world: str, out: str, fmt: str = "csv") -> dict:
    """Export ``world`` under ``out`` with the example naming; returns the reading mapping."""
    return export_world(world, out, format=fmt, columns=RENAMES, event_names=EVENT_NAMES,
                        time_unit=TIME_UNIT, events_per_file=EVENTS_PER_FILE)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--world", required=True, help="a world folder (recsys-simulate's)")
    p.add_argument("--out", required=True, help="where the raw tables go")
    p.add_argument("--format", default="csv", choices=("csv", "jsonl", "parquet"))
    args = p.parse_args()
    print(json.dumps(export_example(args.world, args.out, args.format), indent=2))


if __name__ == "__main__":
    main()
