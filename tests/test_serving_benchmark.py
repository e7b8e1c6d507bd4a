"""The serving benchmark: HTTP client framing, open-loop load generation, request mix, harness."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from harness.http_client import HttpRequest, ProtocolError, parse_head, read_response
from harness.loadgen import LoadConfig, run_open_loop
from harness.request_mix import ID_LOW, LiveWorld, MixConfig, RequestMix

from recsys.serving.schemas import EventBatch


async def _serve(reader, writer, answer, once: bool = False) -> None:
    """Answer keep-alive requests with ``answer(target) -> (status, delay_s)``; ``once``: close
    the connection after the first answer (as a server's keep-alive timeout does)."""
    try:
        while not writer.is_closing():
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            length = [h.split(":")[1] for h in head.split("\r\n") if h.startswith("Content-Length")]
            await reader.readexactly(int(length[0]) if length else 0)
            status, delay = answer(head.split(" ")[1])
            await asyncio.sleep(delay)
            body = b'{"ok": true}'
            writer.write(
                b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
            )
            await writer.drain()
            if once:
                writer.close()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def load(requests, config, answer=lambda target: (200, 0.0), port=None, once=False):
    """Run the load generator against a fresh in-process server (or a dead ``port``)."""

    async def main():
        server = await asyncio.start_server(lambda r, w: _serve(r, w, answer, once), "127.0.0.1", 0)
        live_port = server.sockets[0].getsockname()[1]
        async with server:
            return await run_open_loop("127.0.0.1", port or live_port, requests, config)

    return asyncio.run(main())


def get(n: int, target: str = "/x") -> list[HttpRequest]:
    return [HttpRequest("GET", target, label="get")] * n


def test_open_loop_sends_on_schedule_and_records_every_request():
    result = load(get(30), LoadConfig(rps=20))
    s = result.summary()
    assert (s["requests"], s["ok"], s["errors"]["total"], s["offered_rps"]) == (30, 30, 0, 20.0)
    assert s["latency_ms"]["from_schedule"]["count"] == s["latency_ms"]["from_send"]["count"] == 30
    lag = result.sent - result.scheduled
    assert (lag >= 0).all() and lag.max() < 0.05  # each request left when it was due
    assert result.sent[-1] - result.sent[0] == pytest.approx(29 / 20, abs=0.05)
    assert (result.done > result.sent).all()
    assert 18 <= s["achieved_rps"] <= 22
    assert s["latency_ms"]["from_schedule"]["p50"] >= s["latency_ms"]["from_send"]["p50"] > 0


def test_non_2xx_answers_count_as_status_errors():
    requests = [HttpRequest("GET", "/fail" if i % 3 == 0 else "/ok", label="get") for i in range(9)]
    result = load(requests, LoadConfig(rps=100), lambda t: (500 if t == "/fail" else 200, 0.0))
    s = result.summary()
    assert (s["ok"], s["errors"]["status"], s["errors"]["total"]) == (6, 3, 3)
    assert s["status_codes"] == {"500": 3}
    assert s["latency_ms"]["from_send"]["count"] == 6  # latencies of successes only
    assert result.first_errors["status"] == '{"ok": true}'


def test_unreachable_server_counts_connection_errors():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens here once the socket is closed
    result = load(get(10), LoadConfig(rps=100), port=dead)
    s = result.summary()
    assert (s["ok"], s["errors"]["connection"], s["errors"]["total"]) == (0, 10, 10)
    assert s["latency_ms"]["from_schedule"]["p99"] is None and s["achieved_rps"] is None
    assert "Connection" in result.first_errors["connection"]


def test_in_flight_bound_drops_and_slow_answers_time_out():
    # Due at 0, 50, ..., 350 ms; the first two hang until their 0.5 s timeout, the rest find
    # two requests in flight and are dropped.
    result = load(get(8), LoadConfig(rps=20, max_in_flight=2, timeout_s=0.5), lambda t: (200, 5.0))
    s = result.summary()
    assert s["errors"] == {"status": 0, "timeout": 2, "connection": 0, "dropped": 6, "total": 8}
    assert list(result.outcome) == ["timeout"] * 2 + ["dropped"] * 6
    assert np.isnan(result.sent[2:]).all()


def test_connections_closed_by_the_server_while_idle_are_replaced_not_failed():
    result = load(get(4), LoadConfig(rps=5), once=True)
    assert result.summary()["ok"] == 4 and result.connections_opened == 4


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_response_framing():
    assert parse_head(b"HTTP/1.1 404 Not Found\r\nContent-Type: x\r\n\r\n") == (
        404,
        {"content-type": "x"},
    )
    with pytest.raises(ProtocolError, match="status line"):
        parse_head(b"SMTP ready\r\n\r\n")

    async def read(data: bytes):
        return await read_response(_reader(data))

    ok = asyncio.run(read(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcd"))
    assert (ok.status, ok.body, ok.keep_alive) == (200, b"abc", False)
    with pytest.raises(ProtocolError, match="chunked"):
        asyncio.run(read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"))
    post = HttpRequest("POST", "/events", b"{}").encode("h")
    assert post == (
        b"POST /events HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )


def _live_world(tables) -> tuple[LiveWorld, int]:
    last = tables.live_sessions.loc[tables.live_sessions["start_ts"].idxmax()]
    now = (int(last["start_ts"]) + int(last["end_ts"])) // 2  # as recsys-serve's default clock
    return LiveWorld.at(tables.users, tables.live_sessions, tables.showcase, now), now


def test_request_mix_is_seeded_and_sends_valid_live_events(tiny_world):
    world, now = _live_world(tiny_world)
    config = MixConfig(k=7, kind="room", events_share=0.3, unknown_share=0.1, seed=3)
    requests = RequestMix(world, config).requests(400, rps=50, now=now)
    again = RequestMix(world, config).requests(400, rps=50, now=now)
    assert [(r.target, r.body) for r in requests] == [(r.target, r.body) for r in again]
    events = [r for r in requests if r.label == "events"]
    assert 80 <= len(events) <= 160
    live = tiny_world.live_sessions.set_index("session_id")
    shown = set(
        zip(tiny_world.showcase["session_id"], tiny_world.showcase["product_id"], strict=True)
    )
    for r in events:
        batch = EventBatch.model_validate_json(r.body).events  # what the service accepts
        assert 1 <= len(batch) <= 5 and batch[0].event_type == "enter"
        assert now <= batch[0].ts <= now + 8
        session = live.loc[batch[0].session_id]
        assert session["start_ts"] <= now < session["end_ts"]
        assert all((e.session_id, e.product_id) in shown for e in batch if e.event_type == "click")
    users = np.array(
        [int(r.target.split("user=")[1].split("&")[0]) for r in requests if r.label == "recommend"]
    )
    known = np.isin(users, world.users)
    assert (known | (users >= ID_LOW)).all() and 0.04 <= 1 - known.mean() <= 0.18
    assert all(r.target.endswith("&k=7&kind=room") for r in requests if r.label == "recommend")


def _serving_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "serving.py"
    spec = importlib.util.spec_from_file_location("serving_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _running_with(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_text():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_benchmark_drives_the_real_service_and_stops_it(tiny_world_dir, tmp_path):
    argv = ["--rps", "20", "--seconds", "2", "--warmup-seconds", "0.5", "--floor-seconds", "0.5",
            "--serve-arg", f"world.data_dir={tiny_world_dir}", "--label", "t",
            "--out-dir", str(tmp_path)]  # fmt: skip
    report = _serving_benchmark().main(argv)
    rate = report["rates"][0]
    assert (rate["requests"], rate["ok"], rate["errors"]["total"]) == (40, 40, 0)
    assert rate["by_endpoint"]["recommend"]["ok"] + rate["by_endpoint"]["events"]["ok"] == 40
    assert rate["floor_healthz"]["ok"] == 10 and rate["server_cpu_s"] > 0
    assert report["health_start"]["recommender"] == "popularity-live"
    assert report["health_end"]["sessions"] > report["health_start"]["sessions"]  # events landed
    saved = json.loads((tmp_path / "serving_t.json").read_text())
    assert str(tmp_path) not in saved["command"] and str(tiny_world_dir) not in json.dumps(saved)
    assert "world.data_dir=<local>/" in saved["command"] and "--out-dir" not in saved["command"]
    assert "not measured" in (tmp_path / "serving_t.md").read_text()
    assert _running_with(str(tiny_world_dir)) == []
