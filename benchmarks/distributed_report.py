"""The markdown report of ``benchmarks/distributed.py``'s results, one function a section."""

from __future__ import annotations

from pathlib import Path

from distributed_stream import stream_md

SECTIONS = ("equivalence", "reshard", "kill", "scale", "stream", "table")


def markdown(r: dict) -> str:
    lines = [
        "# Sharded training on CPU (torchrec DMP, gloo, 2 ranks)",
        "",
        "`python benchmarks/distributed.py` (sections: "
        + ", ".join(k for k in SECTIONS if k in r)
        + ")",
        "",
        f"Machine: {r['machine']}. GPU/NCCL: not run here (no GPU); unverified.",
        "",
    ]
    write = {"equivalence": _equivalence_md, "reshard": _reshard_md, "kill": _kill_md,
             "scale": _scale_md, "stream": stream_md, "table": _table_md}  # fmt: skip
    for name in SECTIONS:
        if name in r:
            lines += write[name](r[name])
    return "\n".join(lines).replace(str(Path.home()), "~")


def _equivalence_md(e: dict) -> list[str]:
    lines: list[str] = []
    lines += [
        "## Equivalence (tiny world, one epoch)",
        "",
        f"`{e['command']}`",
        "",
        "| family | sharding (every table) | 2-rank valid NDCG@10 (product / room) "
        "| vs plain 1 process: max abs diff HR/NDCG/MRR | same: coverage@k "
        "| vs 1 process, same sharded tables: HR/NDCG/MRR | same: coverage@k |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in e["rows"]:
        heads = ("valid/product/live/ndcg@10", "valid/streamer/live/ndcg@10")
        nd = " / ".join(f"{row['two_ranks'][k]:.4f}" for k in heads if k in row["two_ranks"])
        lines.append(
            f"| {row['family']} | {row['sharding']} | {nd} | "
            f"{row['diff_vs_plain_one_process']:.2g} | "
            f"{row['coverage_diff_vs_plain_one_process']:.2g} | "
            f"{row['diff_vs_one_process_sharded']:.2g} | "
            f"{row['coverage_diff_vs_one_process_sharded']:.2g} |"
        )
    targets = e["rows"][0].get("valid_targets", {})
    lines += [
        "",
        f"Plain 1 process: `{e.get('plain_command', '')}`. Every rank's loss is its term of "
        "the whole batch's loss (per-head means over the whole batch's targets; the "
        "two-tower's in-batch negatives are every row's positive), so 2 ranks optimise the "
        "single process's objective (`recsys/tasks/whole_batch.py`; "
        "`tests/test_whole_batch.py` checks the parts' losses and gradients sum to the "
        "whole batch's). Batches are split into contiguous blocks, so the sharded lookups "
        "gather the rows in the single process's order, and Adam leaves out tables no rank "
        "read in a step, as unsharded. The sequential model's lookups are copies, so its runs "
        "agree exactly. The two-tower sums weighted history bags in the lookup kernel by "
        "default: FBGEMM's when sharded, PyTorch's `embedding_bag` unsharded, which round "
        "differently (first step: the same loss, gradients within ~1e-7 of their size), and "
        "Adam's normalised steps carry the rounding into the weights over an epoch; with "
        "`model.portable_pooling=true` both paths sum them in PyTorch and the runs agree "
        "exactly. With dropout, `trainer.row_keyed_dropout=true` draws each row's masks from "
        "the whole batch's, seeded by the step, as one process does (`recsys/models/"
        "row_dropout.py`); without it every rank draws its own masks from its generator, and "
        "the runs differ as two seeds would. Validation holds "
        + ", ".join(f"{n:g} {h} targets" for h, n in targets.items())
        + " (one target crossing a top-k boundary moves HR@k by 1/n). coverage@k counts "
        "the catalogue's products seen in any top-k list (240 on the tiny world: steps of "
        "1/240 = 0.0042).",
        "",
    ]
    return lines


def _reshard_md(s: dict) -> list[str]:
    lines: list[str] = []
    lines += [
        "## Resharding (sequential model, tiny, epoch 1 saved, resumed for epoch 2)",
        "",
        "| path | max abs diff of valid metrics vs uninterrupted 2 ranks |",
        "|---|---:|",
        f"| 2 ranks -> 1 process | {s['2_to_1']['diff']:.2g} |",
        f"| 1 process -> 2 ranks | {s['1_to_2']['diff']:.2g} |",
        "",
        f"2-rank DCP checkpoint read whole in one process vs `best.pt`: {s['dcp_whole_vs_best']}.",
        "",
        f"`recsys-index` on the 2-rank `best.pt`: exit "
        f"{s['recsys_index_on_2_rank_best']['returncode']}, "
        f"{index_lines(s['recsys_index_on_2_rank_best']['output'])}.",
        "",
    ]
    return lines


def _kill_md(k: dict) -> list[str]:
    lines: list[str] = []
    lines += [
        "## SIGKILL of rank 1 mid-epoch, then resume=true",
        "",
        f"`{k['command']}`",
        "",
        f"Killed after the checkpoint at epoch {k['killed_at']['epoch']} step "
        f"{k['killed_at']['step']} (torchrun exit {k['torchrun_exit']}); resumed "
        f"final valid metrics vs uninterrupted: max abs diff {k['diff']:.2g} "
        f"(NDCG@10 product / room: {_pair(k['resumed'])} vs {_pair(k['uninterrupted'])}).",
        "",
    ]
    return lines


def _table_md(t: dict) -> list[str]:
    lines: list[str] = []
    lines += [
        f"## One row-wise table of {t['rows']:,} x {t['dim']} (float32)",
        "",
        "`python benchmarks/distributed.py --sections table` (worker: "
        "`benchmarks/distributed_table.py`; the table is built on the meta device, so "
        "no process ever holds it whole; batches of 4,096 bags of 8 random ids)",
        "",
        "| optimizer | ranks | peak RSS per rank (MiB) | lookups/s per rank | step ms | load avg |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for row in t["runs"]:
        rss = ", ".join(f"{x:.0f}" for x in row["peak_rss_mib"])
        lines.append(
            f"| {row['optimizer']} | {row['world']} | {rss} | "
            f"{row['lookups_per_second_per_rank']:,.0f} | {row['step_ms']:.0f} | "
            f"{row['load'][0]:.1f} |"
        )
    lines.append("")
    return lines


def _pair(metrics: dict) -> str:
    heads = ("valid/product/live/ndcg@10", "valid/streamer/live/ndcg@10")
    return " / ".join(f"{metrics[k]:.4f}" for k in heads if k in metrics)


def index_lines(output: list[str]) -> str:
    """``recsys-index``'s "<head>: <n> x <dim> <factory>" lines, without folders."""
    return "; ".join(ln.split(" -> ")[0] for ln in output if " x " in ln and "[" not in ln)


def _scale_md(s: dict) -> list[str]:
    counts = s.get("world_counts", {})
    world = ", ".join(f"{n:,} {k}" for k, n in counts.items() if k in ("events", "users",
                                                                      "products"))  # fmt: skip
    lines = [
        f"## Scale: sequential model on `{s['preset']}`, {s['seconds']:.0f} s of training",
        "",
        f"`{s['command']}`",
        "",
        *(
            [f"World: {world}. 2-rank input: `{s.get('input_mode', 'memory')}`.", ""]
            if world
            else []
        ),  # fmt: skip
        "| setting | sequences/s | per rank | peak RSS per rank (MiB) | load avg before -> after |",
        "|---|---:|---:|---|---|",
    ]
    for name, row in s["rows"].items():
        rss = ", ".join(f"{x['peak_rss_mib']:.0f}" for x in row["ranks"]) if row["ranks"] else "-"
        load = f"{row['load_before'][0]:.1f} -> {row['load_after'][0]:.1f}"
        lines.append(
            f"| {name} | {row['sequences_per_second']:.0f} | {row['per_rank']:.0f} | "
            f"{rss} | {load} |"
        )
    lines += [
        "",
        f"Scaling efficiency 1 -> 2 processes (2-rank sequences/s over twice one "
        f"1-thread process's): {s['scaling_efficiency_1_to_2']:.2f}, on 2 cores shared "
        "with other jobs (load averages above).",
        "",
    ]
    return lines
