"""Every way ``recsys`` cuts data into train, validation and test, in one place.

* ``leave_one_out`` and the global ``temporal_split`` of user sequences (``sequences``);
* ``live_time_split`` of live-commerce tables, each target with what was live at its time
  (``live``);
* splits derived from a split: new-item targets only, folded validation, a split as a protocol
  ranks it (``targets``).
"""

from recsys.data.splits.live import live_time_split
from recsys.data.splits.sequences import (
    first_per_group,
    leave_one_out,
    pair_in_history,
    temporal_split,
    temporal_split_by_fraction,
    time_cutoffs,
)
from recsys.data.splits.targets import fold_unsampled_validation, for_protocol, new_item_targets

__all__ = [
    "first_per_group",
    "fold_unsampled_validation",
    "for_protocol",
    "leave_one_out",
    "live_time_split",
    "new_item_targets",
    "pair_in_history",
    "temporal_split",
    "temporal_split_by_fraction",
    "time_cutoffs",
]
