"""The market's planted message fatigue counts the messages a viewer really got."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.market import Market, MarketConfig, Messages, RandomPolicy
from recsys.market.messages import fatigue


class _EveryTrigger(RandomPolicy):
    """Random slates; every trigger messaged in-app at its moment."""

    def notify(self, triggers, market):
        return Messages(triggers["trigger_id"].to_numpy(), np.full(len(triggers), "in_app",
                        dtype=object), triggers["start_ts"].to_numpy())  # fmt: skip


def test_fatigue_counts_the_previous_days_messages_of_64_bit_viewer_ids(tmp_path):
    market = Market(MarketConfig(preset="tiny", seed=0), tmp_path)
    market.run(_EveryTrigger(seed=0))
    sent = market.state.sent
    assert sent["user_id"].dtype == np.int64  # ids above 2**53 survive the day-to-day concat
    assert (sent["user_id"].abs() > 2**53).any()
    logs = [market.read_day(d) for d in range(market.n_days)]
    last = logs[-1]["messages"]
    before = pd.concat([day["messages"] for day in logs[:-1]])
    user, ts = last["user_id"].to_numpy(np.int64), last["ts"].to_numpy(np.int64)
    expected = fatigue(before["user_id"].to_numpy(np.int64), before["ts"].to_numpy(np.int64),
                       user, ts)  # fmt: skip
    assert expected.max() >= 3  # viewers messaged on earlier days are tired on the last
    counted = fatigue(sent["user_id"].to_numpy(np.int64), sent["ts"].to_numpy(np.int64),
                      last["user_id"].to_numpy(np.int64), last["ts"].to_numpy(np.int64) - 1)
    assert counted.sum() > 0
