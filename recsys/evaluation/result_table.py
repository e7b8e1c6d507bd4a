"""The quality benchmark's markdown table, and the check that a tuned value was bracketed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recsys.evaluation.selection import ModelResult


def grid_edges(rows: Sequence[dict], chosen: dict) -> list[str]:
    """The chosen numeric hyperparameters that sit at the lowest or highest value tried: the
    search did not bracket their optimum, so a wider grid might do better."""
    out = []
    for name, value in chosen.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        tried = {
            r["hparams"][name]
            for r in rows
            if isinstance(r["hparams"].get(name), int | float)
            and not isinstance(r["hparams"].get(name), bool)
        }
        if len(tried) > 1 and value in (min(tried), max(tried)):
            side = "lowest" if value == min(tried) else "highest"
            out.append(f"{name}={value} is the {side} value tried ({sorted(tried)})")
    return out


def markdown_table(results: Sequence[ModelResult], columns: Sequence[str]) -> str:
    head = ["model", *columns, "seeds: sd", "vs best (p)", "vs best baseline (p)", "fit s",
            "rec s", "peak MiB", "hparams"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r.name]
        cells += [
            f"{r.test[c]:.4f}" if isinstance(r.test.get(c), float) else str(r.test.get(c, "-"))
            for c in columns
        ]
        cells.append(f"{len(r.seeds['seeds'])}: {r.seeds['std']:.4f}" if r.seeds else "-")
        sig, base = r.significance, r.vs_best_baseline
        cells.append("best" if not sig else f"{sig['diff']:+.4f} ({sig['p_value']:.2g})")
        cells.append(f"{base['diff']:+.4f} ({base['p_value']:.2g})" if base else "-")
        cells += [f"{r.fit_s:.1f}", f"{r.recommend_s:.1f}", f"{r.peak_rss_mb:.0f}", _fmt(r.hparams)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(hparams: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in hparams.items()) or "-"
