"""The command line a results file records: the script and its arguments, with absolute paths
(this machine's folders) replaced by ``<local>/<name>`` so results carry no machine's layout."""

from __future__ import annotations

import shlex
from pathlib import Path


def recorded_command(script: str, argv: list[str]) -> str:
    return shlex.join(["python", script, *(_portable(a) for a in argv)])


def _portable(arg: str) -> str:
    key, sep, value = arg.partition("=")
    if sep and value.startswith("/"):
        return f"{key}=<local>/{Path(value).name}"
    return f"<local>/{Path(arg).name}" if arg.startswith("/") else arg
