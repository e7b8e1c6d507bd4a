"""One table of every committed quality result: NDCG@10 per dataset, protocol and model.

    python benchmarks/summarise.py

Reads ``benchmarks/results/quality_*.json`` and writes ``benchmarks/results/summary.md``; each
column names the results file (and so the command) it comes from. A second table puts each
trained model run over several seeds beside the best tuned baseline of its file (mean and
spread of the seeds, the paired test, published numbers under the same protocol) and the
largest peak memory of the file's runs.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load() -> list[dict]:
    """Every report, with ``file``: its name without ``quality_`` and ``.json`` (unique, so it
    tells apart runs of one dataset and protocol with other models or settings)."""
    return [
        {**json.loads(p.read_text()), "file": p.stem.removeprefix("quality_")}
        for p in sorted(RESULTS.glob("quality_*.json"))
    ]


def main() -> str:
    reports = load()
    models = sorted({m for r in reports for m in r["models"]}, key=_order)
    head = ["model"] + [r["file"] for r in reports]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in models:
        cells = [model]
        for r in reports:
            res = r["models"].get(model)
            key = "sampled_ndcg@10" if r["protocol"].startswith("sampled") else "ndcg@10"
            best = max(r["models"].values(), key=lambda m: m["test"][key])
            value = res["test"][key] if res else None
            cell = "-" if value is None else f"{value:.4f}"
            cells.append(f"**{cell}**" if res is best else cell)
        lines.append("| " + " | ".join(cells) + " |")
    sources = [
        f"- {r['file']} ({r['dataset']}, {r['protocol']}): `{r['command']}`, {r['seconds']} s"
        for r in reports
    ]
    text = (
        "# Quality results: test NDCG@10 (best per column in bold)\n\n"
        "Each column is one results file (`benchmarks/results/quality_<column>.json`). Columns "
        "ending in `_sampled` rank the target among 100 sampled items and are not comparable with "
        "full-ranking ones.\n\n"
        + "\n".join(lines)
        + "\n\n"
        + against_baselines(reports)
        + "\nSources:\n\n"
        + "\n".join(sources)
        + "\n"
    )
    (RESULTS / "summary.md").write_text(text)
    print(text)
    return text


def against_baselines(reports: list[dict]) -> str:
    """Trained models over several seeds against the best baseline of the same file."""
    head = ["file", "model", "test NDCG@10 (mean of seeds)", "sd", "best baseline",
            "diff (p)", "published", "peak MiB"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in reports:
        for name, m in r["models"].items():
            seeds, base = m.get("seeds") or {}, m.get("vs_best_baseline") or {}
            if len(seeds.get("seeds", [])) < 2 or not base:
                continue
            best = r["models"][base["best"]]
            refs = "; ".join(f"{x['model']} {x['ndcg@10']:.4f}"
                             for x in (r.get("references") or {}).get("rows", []))  # fmt: skip
            peak = max(x.get("peak_rss_mb", 0.0) for x in r["models"].values())
            lines.append(
                f"| {r['file']} | {name} | {m['test']['ndcg@10']:.4f} ({len(seeds['seeds'])}) | "
                f"{seeds['std']:.4f} | {base['best']} {best['test']['ndcg@10']:.4f} | "
                f"{base['diff']:+.4f} ({base['p_value']:.2g}) | {refs or '-'} | {peak:.0f} |"
            )
    if len(lines) == 2:
        return ""
    return (
        "## Trained models against the best tuned baseline (test NDCG@10, paired t-test of the "
        "seeds' mean per target)\n\n" + "\n".join(lines) + "\n\n"
    )


def _order(name: str) -> tuple[int, str]:
    known = ["popularity", "popularity_recent", "item_knn", "ease", "als", "bpr", "content_based"]
    return (known.index(name) if name in known else len(known), name)


if __name__ == "__main__":
    main()
