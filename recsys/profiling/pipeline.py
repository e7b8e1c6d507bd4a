"""Events -> statistics -> profiles -> tags, in one object that holds the lookups and rules.

``Profiler.build(events)`` profiles a batch from scratch; ``Profiler.update(previous, events)``
merges a new batch into earlier statistics and re-derives everything, which equals building
from all events at once (see ``recsys.profiling.stats``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from recsys.data.tables import LiveCommerceTables
from recsys.privacy.consent import ConsentBook
from recsys.profiling.aggregate import batch_stats
from recsys.profiling.catalog import Catalog
from recsys.profiling.config import ProfileConfig
from recsys.profiling.features import Profiles, derive_profiles, profile_matrix
from recsys.profiling.segments import Segments, fit_segments, segment_tags
from recsys.profiling.stats import ProfileStats
from recsys.profiling.tags import TagRules, assign_tags


@dataclass(frozen=True)
class ProfileResult:
    stats: ProfileStats  # the mergeable state to keep for the next update
    profiles: Profiles
    tags: pd.DataFrame  # rule tags (and segment tags when segments were fitted)
    segments: Segments | None = None


@dataclass(frozen=True)
class Profiler:
    catalog: Catalog
    config: ProfileConfig = field(default_factory=ProfileConfig.default)
    rules: TagRules = field(default_factory=TagRules.from_yaml)
    n_segments: int = 0  # 0: no learned segments
    segment_seed: int = 0
    # Viewers who withheld personalisation: their new events are not read, and they get no
    # profile, tag or segment row (their earlier statistics are kept, untouched, should they
    # grant it again). None: everyone is profiled.
    consent: ConsentBook | None = None

    @classmethod
    def for_tables(
        cls,
        tables: LiveCommerceTables,
        config: ProfileConfig | None = None,
        rules: TagRules | None = None,
        categories: tuple[str, ...] | None = None,
        n_segments: int = 0,
        segment_seed: int = 0,
    ) -> Profiler:
        return cls(
            catalog=Catalog.from_tables(tables.products, tables.streamers, categories),
            config=config if config is not None else ProfileConfig.default(),
            rules=rules if rules is not None else TagRules.from_yaml(),
            n_segments=n_segments,
            segment_seed=segment_seed,
        )

    def consented(self, events: pd.DataFrame) -> pd.DataFrame:
        """The events of viewers who allow personalisation."""
        return events if self.consent is None else self.consent.keep_events(events)

    def stats(self, events: pd.DataFrame, ref_ts: int | None = None) -> ProfileStats:
        return batch_stats(self.consented(events), self.catalog, self.config, ref_ts)

    def derive(self, stats: ProfileStats) -> ProfileResult:
        profiles = self._without_withheld(derive_profiles(stats, self.config))
        tags = assign_tags(profiles, self.rules)
        segments = None
        if self.n_segments > 0:
            user_ids, matrix, names = profile_matrix(profiles)
            segments = fit_segments(matrix, names, k=self.n_segments, seed=self.segment_seed)
            tags = pd.concat([tags, segment_tags(user_ids, matrix, segments)], ignore_index=True)
            tags = tags.sort_values(["user_id", "tag_id"], kind="stable", ignore_index=True)
        return ProfileResult(stats, profiles, tags, segments)

    def _without_withheld(self, profiles: Profiles) -> Profiles:
        """No profile (hence no tag or segment) for a viewer who withheld personalisation,
        even from statistics gathered before they withdrew."""
        if self.consent is None:
            return profiles
        ok = [self.consent.keep_events(f) for f in (profiles.users, profiles.streamers)]
        return replace(profiles, users=ok[0].reset_index(drop=True),
                       streamers=ok[1].reset_index(drop=True))  # fmt: skip

    def build(self, events: pd.DataFrame) -> ProfileResult:
        return self.derive(self.stats(events))

    def update(self, previous: ProfileStats, events: pd.DataFrame) -> ProfileResult:
        """Merge a new batch into ``previous`` statistics and re-derive profiles and tags."""
        events = self.consented(events)
        if len(events) == 0:
            return self.derive(previous)
        new = self.stats(events)
        return self.derive(previous.merge(new))


def build_profiles(
    tables: LiveCommerceTables,
    config: ProfileConfig | None = None,
    rules: TagRules | None = None,
    n_segments: int = 0,
) -> ProfileResult:
    """Profiles and tags of every user in ``tables.events`` (default features and rules)."""
    return Profiler.for_tables(tables, config, rules, n_segments=n_segments).build(tables.events)
