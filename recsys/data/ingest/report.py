"""What one ``recsys-ingest`` run did: rows read, accepted, rejected (with reasons) and already
held per table, rows of forgotten users dropped, and where the time went."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recsys.data.validation import TableCounts


@dataclass
class IngestReport:
    out_dir: Path
    counts: dict[str, TableCounts]
    already_present: dict[str, int]  # accepted rows whose id the world already held
    quarantine: Path
    appended: bool
    seconds: float
    peak_chunk_rows: int = 0
    batch: int = 0
    # wall (and CPU: *_cpu) seconds of the entity tables, the events, consent, the final writes
    stage_seconds: dict[str, float] = field(default_factory=dict)
    tombstoned: dict[str, int] = field(default_factory=dict)  # rows of forgotten users dropped

    @property
    def n_rejected(self) -> int:
        return sum(c.rejected for c in self.counts.values())

    def summary(self) -> str:
        verb = "appended to" if self.appended else "wrote"
        lines = [
            f"ingest: {verb} {self.out_dir} in {self.seconds:.1f} s (batch {self.batch})",
            f"  {'table':<14}{'input':>11}{'accepted':>11}{'rejected':>11}{'present':>11}",
        ]
        for name, c in self.counts.items():
            lines.append(f"  {name:<14}{c.input:>11}{c.accepted:>11}{c.rejected:>11}"
                         f"{self.already_present.get(name, 0):>11}")  # fmt: skip
            lines += [f"      {key}: {n}" for key, n in c.reasons.items()]
        lines += [f"  {name}: {n} rows of forgotten users dropped (tombstones)"
                  for name, n in self.tombstoned.items() if n]  # fmt: skip
        if self.n_rejected:
            lines.append(f"  rejected rows with their reasons: {self.quarantine}")
        return "\n".join(lines)
