"""CPU per answer of the trained service's request path, in process, and the answers themselves.

    python benchmarks/serving_profile.py --checkpoint RUN/best.pt [--requests 400] [--k 20]
        [--kind product] [--n-candidates 500] [--profile-top 25] [--answers FILE]
        [--compare FILE] [--label NAME]

Loads the service as ``recsys-serve checkpoint=...`` does (one thread), replays the world's
sessions up to the start, then asks ``recommend`` for ``--requests`` viewers drawn like the
serving benchmark's (known viewers who were active before the start), one at a time, and
reports the CPU seconds per answer (``time.process_time``), with a cProfile of a second pass
naming where the time goes. ``--answers FILE`` writes every answer (ids, scores, reasons);
``--compare FILE`` checks that this code gives exactly the answers a file holds, so a faster
request path can be shown to change no score.

Writes ``benchmarks/results/serving_profile[_label].{json,md}``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--ranker-checkpoint")
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--kind", choices=("all", "room", "product"), default="product")
    p.add_argument("--n-candidates", type=int, default=500)
    p.add_argument("--profile-top", type=int, default=25)
    p.add_argument("--answers", type=Path, help="write every answer here (JSON)")
    p.add_argument("--compare", type=Path, help="answers file this run must reproduce exactly")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default="")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    return p.parse_args(argv)


def _redact(arg: str) -> str:
    return f"<local>/{Path(arg).name}" if Path(arg).is_absolute() else arg


def load(args):
    """The service, its start time and the viewers to ask, as the benchmark's mix draws them."""
    from recsys.cli.serve import limit_threads
    from recsys.serving.loading import load_trained_service
    from recsys.serving.trained import FlowConfig

    limit_threads(1)
    picked = {}

    def latest_live(tables) -> int:
        last = tables.live_sessions.loc[tables.live_sessions["start_ts"].idxmax()]
        picked["now"] = (int(last["start_ts"]) + int(last["end_ts"])) // 2
        picked["users"] = tables.users["user_id"].to_numpy(np.int64)
        return picked["now"]

    service = load_trained_service(
        args.checkpoint,
        until=latest_live,
        ranker=args.ranker_checkpoint,
        flow=FlowConfig(n_candidates=args.n_candidates),
    )
    rng = np.random.default_rng(args.seed)
    users = rng.choice(picked["users"], args.requests)
    return service, picked["now"], users.tolist()


def answers(service, now: int, users: list[int], k: int, kinds: tuple[str, ...]) -> list:
    out = []
    for user in users:
        rec = service.recommend(user, now, k, kinds)
        out.append([[i.kind, i.id, i.score, list(i.reasons), i.session] for i in rec.items])
    return out


def timed(service, now, users, k, kinds) -> tuple[float, list]:
    began = time.process_time()
    got = answers(service, now, users, k, kinds)
    return (time.process_time() - began) / len(users), got


def profiled(service, now, users, k, kinds, top: int) -> str:
    profile = cProfile.Profile()
    profile.enable()
    answers(service, now, users, k, kinds)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(top)
    return _relative(text.getvalue())


def _relative(text: str) -> str:
    """The profile with this machine's folders cut off: site-packages paths from the package
    down, the project's from its root down."""
    for prefix in sorted({str(Path(p)) for p in sys.path if p.endswith("site-packages")},
                         key=len, reverse=True):  # fmt: skip
        text = text.replace(prefix + "/", "")
    return text.replace(str(RESULTS.parents[1]) + "/", "")


def markdown(report: dict) -> str:
    same = report.get("same_answers_as")
    lines = [
        "# CPU per answer of the request path\n",
        f"`{report['command']}`\n",
        f"Service: `{json.dumps(report['health'])}`.\n",
        f"{report['requests']} requests, one at a time, in process: "
        f"{report['cpu_ms_per_answer'][0]} / {report['cpu_ms_per_answer'][1]} ms of CPU per answer "
        "(two passes; process time, so other jobs on the machine inflate it less than wall time, "
        "though they still share its caches).\n",
    ]
    if same:
        verdict = "identical" if same["identical"] else "DIFFERENT"
        lines.append(f"Answers (ids, scores, reasons) against `{same['file']}`: {verdict}.\n")
    lines += ["cProfile of a third pass, by cumulative time:\n", "```", report["profile"], "```\n"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    service, now, users = load(args)
    kinds = ("room", "product") if args.kind == "all" else (args.kind,)
    answers(service, now, users[:20], args.k, kinds)  # warm caches (shelf, room vectors)
    cpu, got = timed(service, now, users, args.k, kinds)
    cpu_again, _ = timed(service, now, users, args.k, kinds)
    report = {
        "command": "python benchmarks/serving_profile.py "
        + " ".join(_redact(a) for a in (sys.argv[1:] if argv is None else argv)),
        "health": service.health(now),
        "requests": len(users),
        "cpu_ms_per_answer": [round(cpu * 1e3, 3), round(cpu_again * 1e3, 3)],
        "profile": profiled(service, now, users, args.k, kinds, args.profile_top),
    }
    if args.answers:
        args.answers.write_text(json.dumps(got))
    if args.compare:
        expected = json.loads(args.compare.read_text())
        same = expected == json.loads(json.dumps(got))
        report["same_answers_as"] = {"file": args.compare.name, "identical": same}
        if not same:
            diff = next(i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b)
            report["same_answers_as"]["first_difference"] = diff
    stem = "serving_profile" + (f"_{args.label}" if args.label else "")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / f"{stem}.md").write_text(markdown(report))
    print(json.dumps({k: v for k, v in report.items() if k != "profile"}, indent=2))
    print(report["profile"])
    return report


if __name__ == "__main__":
    main()
