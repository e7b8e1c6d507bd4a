"""How a batch is split into parts (ranks of a sharded run, micro-batches): contiguous blocks.

Part ``j`` of ``P`` holds a contiguous block of the batch's rows, the first ``n % P`` blocks one
row longer, so the parts in order are the batch. Contiguous blocks keep every kernel's order of
work: the sharded lookups gather the ranks' rows rank by rank, which is then the single
process's row order, so gradients are summed in the same order as in one process.
"""

from __future__ import annotations


def part_slice(n: int, part: tuple[int, int]) -> slice:
    """The rows of part ``part = (index, count)`` of a batch of ``n`` rows."""
    index, count = part
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"part {index} of {count}: not a part of a split batch")
    size, longer = divmod(n, count)
    start = index * size + min(index, longer)
    return slice(start, start + size + (index < longer))
