"""The copy of each sent message: fields from profile tags and entity attributes, then text.

``ProfileTags`` keeps ``recsys.profiling`` statistics up to date with each observed day and
derives the tags when copy is written: the viewer's strongest interest tag (``interest``) and
``price_sensitive`` (the deal phrase). ``message_texts`` fills the ``copy_variant`` and ``text``
columns of the decision rows that send.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.market.policy import MarketView
from recsys.profiling import Catalog, Profiler, ProfileStats, TagRules
from recsys.reach.copy import CopyWriter
from recsys.reach.features import ReachHistory

DEAL, PLAIN = "直播间专享价", "好物不断"  # price-sensitive viewers hear of the price


class ProfileTags:
    """Profile tags of the viewers, from the events observed so far."""

    def __init__(self, products: pd.DataFrame, streamer_category: pd.Series) -> None:
        streamers = streamer_category.rename("category").rename_axis("streamer_id").reset_index()
        self.rules = TagRules.from_yaml()
        self.profiler = Profiler(Catalog.from_tables(products, streamers), rules=self.rules)
        self.labels = {k: zh for k, (zh, _) in self.rules.labels.get("category", {}).items()}
        self.stats: ProfileStats | None = None
        self._tags: pd.DataFrame | None = None

    def observe(self, events: pd.DataFrame) -> None:
        known = events["streamer_id"].isna() | events["streamer_id"].isin(
            self.profiler.catalog.streamer_index)  # fmt: skip
        new = self.profiler.stats(events.loc[known])
        self.stats = new if self.stats is None else self.stats.merge(new)
        self._tags = None

    def fields(self, user_id: np.ndarray) -> pd.DataFrame:
        """``interest`` (Chinese category name) and ``price_phrase`` per viewer ('' if none)."""
        out = pd.DataFrame(index=pd.Index(np.unique(user_id), name="user_id"))
        out["interest"], out["price_phrase"] = "", PLAIN
        if self.stats is None:
            return out
        if self._tags is None:
            self._tags = self.profiler.derive(self.stats).tags
        tags = self._tags.loc[self._tags["user_id"].isin(out.index)]
        interest = tags.loc[tags["rule_id"] == "interest_{category}"]
        interest = interest.sort_values(["user_id", "confidence"], ascending=[True, False])
        top = interest.drop_duplicates("user_id").set_index("user_id")["entity"]
        out.loc[top.index, "interest"] = top.map(self.labels).fillna("").to_numpy()
        deal = tags.loc[tags["tag_id"] == "price_sensitive", "user_id"].unique()
        out.loc[deal, "price_phrase"] = DEAL
        return out


def message_texts(rows: pd.DataFrame, market: MarketView, history: ReachHistory,
                  copy: CopyWriter, tags: ProfileTags | None = None) -> pd.DataFrame:  # fmt: skip
    """``rows`` with ``copy_variant`` and ``text`` (-1 and '' where nothing is sent)."""
    rows = rows.assign(copy_variant=-1, text="")
    send = np.flatnonzero(rows["send"].to_numpy(bool))
    if len(send) == 0:
        return rows
    s = rows.iloc[send]
    fields = _fields(s, rows, market, history, tags)
    variant = copy.variant(s["user_id"].to_numpy(), s["kind"].to_numpy())
    kinds = s["kind"].tolist()
    texts = [copy.write(kinds[i], int(variant[i]), f) for i, f in enumerate(fields)]
    rows.loc[rows.index[send], "copy_variant"] = variant
    rows.loc[rows.index[send], "text"] = texts
    return rows


def _fields(s: pd.DataFrame, rows: pd.DataFrame, market: MarketView, history: ReachHistory,
            tags: ProfileTags | None) -> list[dict[str, str]]:  # fmt: skip
    """The template fields of each sent row ('' where a field has no value)."""
    labels = tags.labels if tags is not None else {}
    n = len(s)
    streamer = s["streamer_id"].to_numpy(np.int64)
    cat = history.streamer_category.reindex(streamer).map(labels).fillna("").to_numpy(object)
    prod = market.products.set_index("product_id").reindex(s["product_id"].to_numpy())
    has = (s["product_id"].to_numpy(np.int64) >= 0) & prod["brand"].notna().to_numpy()
    product = np.where(has, prod["brand"].fillna("").astype(str).to_numpy(object)
                       + prod["category"].map(labels).fillna("").to_numpy(object), "")
    price = np.where(has, prod["price"].map(lambda v: f"{v:.0f}" if v == v else "").to_numpy(
        object), "")  # fmt: skip
    start = s["start_ts"].to_numpy(np.int64)
    clock = [f"{h:02d}:{m:02d}" for h, m in zip(history.clock.hour(start), start // 60 % 60,
                                                  strict=True)]  # fmt: skip
    merged = rows.loc[rows["reason_code"] == "merged", "reason"].str.extract(r"(\d+)$")[0]
    extra_items = merged.astype(np.int64).value_counts() if len(merged) else pd.Series(dtype=int)
    items = 1 + extra_items.reindex(s["trigger_id"].to_numpy()).fillna(0).to_numpy(np.int64)
    extra = tags.fields(s["user_id"].to_numpy()) if tags is not None else None
    interest = extra["interest"].reindex(s["user_id"]).to_numpy(object) if extra is not None \
        else np.full(n, "", dtype=object)  # fmt: skip
    deal = extra["price_phrase"].reindex(s["user_id"]).to_numpy(object) if extra is not None \
        else np.full(n, "", dtype=object)  # fmt: skip
    return [{"streamer": f"主播{streamer[i]}" if streamer[i] >= 0 else "", "category": cat[i],
             "product": product[i], "price": price[i], "start_time": clock[i],
             "expiry_time": clock[i], "n_items": str(items[i]), "interest": interest[i],
             "price_phrase": deal[i]} for i in range(n)]  # fmt: skip


def _local(ts: int, history: ReachHistory) -> str:
    return f"{int(history.clock.hour(ts)):02d}:{ts // 60 % 60:02d}"
