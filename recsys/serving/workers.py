"""Serving an app from N worker processes behind one port (the one module running uvicorn).

``serve(app, workers=N)`` binds the port once, then forks N children that each run uvicorn on
that shared listening socket; the kernel hands each new connection to one of them. The app
(model, index, tables, the state as of the start) is built once in the parent before the
fork, so its memory is shared copy-on-write by the workers: pages stay shared until a worker
writes to them (``gc.freeze`` in ``recsys-serve`` keeps the collector from touching every
object). Live state written after the start lives in each worker's copy, kept equal across
workers by the shared event log (``recsys.serving.state``).

The parent supervises: a worker that dies is replaced by a fresh fork of the parent (which
replays the event log on its first request), so a killed worker costs only the requests it
had in flight. SIGINT / SIGTERM to the parent stop every worker gracefully.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time

import uvicorn

log = logging.getLogger(__name__)


def _run_worker(app, sock: socket.socket, log_level: str) -> None:
    """In a forked child: serve until told to stop, then leave without the parent's cleanup."""
    code = 0
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own graceful handlers
        config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    except BaseException:  # a worker must never return into the parent's code
        log.exception("worker %d failed", os.getpid())
        code = 1
    finally:
        os._exit(code)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(app, *, host: str, port: int, workers: int = 1, log_level: str = "info") -> None:
    """Run ``app`` on ``host:port``: in this process for one worker, else in forked workers."""
    if workers < 1:
        raise ValueError(f"serve: workers must be >= 1, got {workers}")
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    sock = _bind(host, port)
    log.info("serving on %s:%d with %d workers", host, port, workers)
    Supervisor(app, sock, workers, log_level).run()


class Supervisor:
    """Keeps ``workers`` forked children serving ``sock`` until SIGINT / SIGTERM."""

    def __init__(self, app, sock: socket.socket, workers: int, log_level: str) -> None:
        self.app, self.sock, self.workers, self.log_level = app, sock, workers, log_level
        self.children: set[int] = set()
        self.stopping = False

    def _fork(self) -> None:
        pid = os.fork()
        if pid == 0:
            _run_worker(self.app, self.sock, self.log_level)
        self.children.add(pid)
        log.info("worker %d started", pid)

    def _stop(self, signum, frame) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                self.children.discard(pid)

    def run(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)
        for _ in range(self.workers):
            self._fork()
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            self.children.discard(pid)
            if not self.stopping:
                log.warning("worker %d ended (status %d); starting another", pid, status)
                time.sleep(0.1)  # a worker failing at start must not spin the machine
                self._fork()
        self.sock.close()
