"""User profiles and interpretable tags for precision marketing.

From everything a viewer did (watching, dwell, comments, clicks, purchases, refunds, coupon
use) to features the two-tower query tower and ranker read, and to tags a marketer reads, each
with a confidence and the reason it holds::

    from recsys.profiling import Profiler, ProfileStore, CohortIndex, profile_matrix

    profiler = Profiler.for_tables(tables)            # features.yaml + tags.yaml defaults
    result = profiler.build(tables.events)            # stats, profiles, tags
    store = ProfileStore("profiles/")
    store.save(result)
    result = store.update(profiler, new_events)       # == building from all events at once
    user_ids, x, names = profile_matrix(result.profiles)          # (U, F) float32
    index = CohortIndex(result.tags, universe=user_ids)
    index.query(all_of=["interest_beauty", "price_sensitive"], none_of=["dormant"],
                min_confidence=0.5)                                 # sorted user ids

Flow: ``aggregate`` turns an event batch into mergeable statistics (``stats``), ``features``
and ``streamers`` derive per-user and per-(user, streamer) features from them, ``tags``
applies the YAML rules, ``segments`` adds seeded k-means segments, ``cohort`` queries tags,
``store`` keeps it all as Parquet with a schema version.
"""

from recsys.profiling.catalog import Catalog
from recsys.profiling.cohort import CohortIndex, cohort
from recsys.profiling.config import ProfileConfig
from recsys.profiling.expressions import Expression, ExpressionError
from recsys.profiling.features import Profiles, derive_profiles, profile_matrix
from recsys.profiling.pipeline import Profiler, ProfileResult, build_profiles
from recsys.profiling.segments import Segments, fit_segments, segment_tags
from recsys.profiling.stats import ProfileStats, merge_all
from recsys.profiling.store import PROFILE_SCHEMA_VERSION, ProfileStore, read_frame, write_frame
from recsys.profiling.tags import TAG_COLUMNS, TagRule, TagRules, assign_tags

__all__ = [
    "PROFILE_SCHEMA_VERSION",
    "TAG_COLUMNS",
    "Catalog",
    "CohortIndex",
    "Expression",
    "ExpressionError",
    "ProfileConfig",
    "ProfileResult",
    "ProfileStats",
    "ProfileStore",
    "Profiler",
    "Profiles",
    "Segments",
    "TagRule",
    "TagRules",
    "assign_tags",
    "build_profiles",
    "cohort",
    "derive_profiles",
    "fit_segments",
    "merge_all",
    "profile_matrix",
    "read_frame",
    "segment_tags",
    "write_frame",
]
