"""The locked service: 401 / 403 / 413 / 429 with clear bodies, scopes per endpoint, tokens from
the environment or a file (hashed), rate limits per client, and PII out of posted comments."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from fastapi.testclient import TestClient
from hydra import compose, initialize_config_module

from recsys.cli.serve import build_app
from recsys.data.validation.online import EventWindow, OnlineEventChecker
from recsys.liveroom.replay import http_sender
from recsys.serving import FixedClock, PopularityLiveService, create_app
from recsys.serving.admission import AdmissionConfig
from recsys.serving.auth import (
    TOKENS_ENV,
    AuthConfig,
    check_exposure,
    hash_token,
    parse_env_tokens,
    read_tokens_file,
)

ENV = {TOKENS_ENV: "bot:ingest:ingest-secret,shop:read:read-secret,ops:operator+read:ops-secret"}


@pytest.fixture(scope="module")
def room(tiny_world) -> dict:
    s = tiny_world.live_sessions.iloc[len(tiny_world.live_sessions) // 2]
    user = int(tiny_world.users["user_id"].iloc[3])
    return {"session_id": int(s["session_id"]), "streamer_id": int(s["streamer_id"]),
            "now": int(s["start_ts"]) + 600, "user": user}  # fmt: skip


def make_client(tiny_world, room, **auth) -> TestClient:
    service = PopularityLiveService.from_tables(tiny_world, until=room["now"])
    checker = OnlineEventChecker.from_tables(tiny_world, window=EventWindow(3600, 60))
    config = AuthConfig.from_settings(environ=ENV, **auth)
    app = create_app(service, clock=FixedClock(room["now"]), checker=checker, auth=config,
                     admission=AdmissionConfig(max_body_bytes=4096))  # fmt: skip
    return TestClient(app)


@pytest.fixture()
def client(tiny_world, room) -> TestClient:
    return make_client(tiny_world, room)


def enter(room: dict, comment: str | None = None) -> dict:
    event = {"ts": room["now"] - 5, "user_id": room["user"], "event_type": "enter",
             "session_id": room["session_id"], "streamer_id": room["streamer_id"]}  # fmt: skip
    if comment is not None:
        event |= {"event_type": "comment", "comment": comment}
    return event


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


def test_events_without_a_token_are_401_and_nothing_is_ingested(client, room):
    answer = client.post("/events", json={"events": [enter(room)]})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="recsys"'
    assert answer.json() == {"error": "unauthorised", "detail": "a bearer token is needed",
                             "scope": "ingest"}  # fmt: skip
    wrong = client.post("/events", json={"events": [enter(room)]}, headers=bearer("guess"))
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    health = client.get("/healthz").json()
    assert health["events_accepted"] == 0
    assert health["requests_rejected"] == {"unauthorised": 2}


def test_a_token_without_the_scope_is_403_and_the_right_one_is_200(client, room):
    answer = client.post("/events", json={"events": [enter(room)]}, headers=bearer("read-secret"))
    assert answer.status_code == 403
    assert answer.json()["detail"] == "token 'shop' lacks scope 'ingest'"
    assert 'error="insufficient_scope", scope="ingest"' in answer.headers["www-authenticate"]
    ok = client.post("/events", json={"events": [enter(room)]}, headers=bearer("ingest-secret"))
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    assert client.get("/healthz").json()["events_accepted"] == 1


def test_scopes_per_endpoint(client, room):
    url = f"/recommend?user={room['user']}&k=3"
    assert client.get(url).status_code == 200  # open by default
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer("read-secret")).status_code == 403
    assert client.get("/metrics", headers=bearer("ops-secret")).status_code == 200
    # A route no rule names is an operator's (deny by default).
    assert client.get("/openapi.json", headers=bearer("ingest-secret")).status_code == 403
    assert client.get("/openapi.json", headers=bearer("ops-secret")).status_code == 200


def test_recommend_can_be_locked(tiny_world, room):
    client = make_client(tiny_world, room, recommend_open=False)
    url = f"/recommend?user={room['user']}&k=3"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=bearer("ingest-secret")).status_code == 403
    assert client.get(url, headers=bearer("read-secret")).status_code == 200


def test_an_over_size_body_is_413_before_its_token_is_read(client, room):
    events = [enter(room)] * 80  # ~10 kB against the 4 kB limit
    for headers in ({}, bearer("ingest-secret")):
        answer = client.post("/events", json={"events": events}, headers=headers)
        assert answer.status_code == 413 and "request body too large" in answer.json()["error"]
    assert client.get("/healthz").json()["events_accepted"] == 0


def test_a_client_over_its_rate_gets_429_with_retry_after(tiny_world, room):
    client = make_client(tiny_world, room, rate_per_s=0.01, burst=2)  # no refill during the test
    url = f"/recommend?user={room['user']}&k=3"
    codes = [client.get(url, headers=bearer("read-secret")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    refused = client.get(url, headers=bearer("read-secret"))
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"] == "too many requests"
    # Another client (another token) has its own bucket; anonymous clients are keyed by IP.
    assert client.get(url, headers=bearer("ops-secret")).status_code == 200
    assert [client.get(url).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/healthz").json()["requests_rejected"]["rate_limited"] == 3


def test_a_page_token_in_the_query_becomes_a_cookie_for_get_only(client, room):
    answer = client.get("/metrics?access_token=ops-secret")
    assert answer.status_code == 200
    assert "recsys_token=ops-secret" in answer.headers["set-cookie"]
    assert "HttpOnly" in answer.headers["set-cookie"]
    assert client.get("/metrics").status_code == 200  # the cookie now
    client.cookies.clear()
    posted = client.post("/events?access_token=ingest-secret", json={"events": [enter(room)]})
    assert posted.status_code == 401


def test_tokens_from_a_file_are_stored_hashed(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text(
        f"- {{name: a, scopes: [ingest], sha256: {hash_token('t-a')}}}\n"
        "- {name: b, scopes: [read, operator], token: t-b, rate_per_s: 5, burst: 10}\n"
    )
    a, b = read_tokens_file(path)
    assert a.digest.hex() == hash_token("t-a") and b.scopes == {"read", "operator"}
    assert (b.rate_per_s, b.burst) == (5, 10)
    config = AuthConfig.from_settings(tokens_file=str(path), environ={})
    assert config.enabled and "t-a" not in repr(config) and "t-b" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [("bot:ingest", r"entry 1: expected name:scope\+scope:token"), ("bot:write:x", "among")],
)
def test_bad_token_settings_name_the_fault(text, message):
    with pytest.raises(ValueError, match=message):
        parse_env_tokens(text)


def test_auth_is_on_exactly_when_tokens_are_configured():
    assert not AuthConfig.from_settings(environ={}).enabled
    assert AuthConfig.from_settings(environ=ENV).enabled
    assert not AuthConfig.from_settings(environ=ENV, enabled="false").enabled
    with pytest.raises(ValueError, match="no token is configured"):
        AuthConfig.from_settings(environ={}, enabled=True)


def test_serving_open_beyond_this_machine_must_be_said_out_loud():
    open_config = AuthConfig.from_settings(environ={})
    check_exposure("127.0.0.1", open_config, "auto")
    check_exposure("0.0.0.0", open_config, "false")
    check_exposure("0.0.0.0", AuthConfig.from_settings(environ=ENV), "auto")
    with pytest.raises(ValueError, match="reachable from other machines"):
        check_exposure("0.0.0.0", open_config, "auto")


def test_posted_comments_lose_their_pii_before_anything_reads_them(client, room):
    ctx = client.app.state.ctx
    result = ctx.ingest([enter(room, "加我微信 abc_12345 或打 138 1234 5678")], room["now"])
    assert [r["comment"] for r in result.accepted] == ["加我微信 [WECHAT] 或打 [PHONE]"]


def test_recsys_serve_config_locks_the_live_dashboard(tiny_world_dir, tmp_path, monkeypatch):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("- {name: ops, scopes: [operator], token: ops-secret}\n"
                      "- {name: replay, scopes: [ingest], token: replay-secret}\n")  # fmt: skip
    monkeypatch.setenv("RECSYS_REPLAY_TOKEN", "replay-secret")
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        overrides = [f"world.path={tiny_world_dir}", f"auth.tokens_file={tokens}"]
        serve_cfg = compose(config_name="serve", overrides=overrides)
        replay_cfg = compose(config_name="replay")
    assert replay_cfg.token == "replay-secret"
    with TestClient(build_app(serve_cfg)) as client:
        assert client.post("/live/events", json={"events": []}).status_code == 401
        ok = client.post("/live/events", json={"events": []}, headers=bearer(replay_cfg.token))
        assert ok.status_code == 200
        assert client.get("/live").status_code == 401
        assert client.get("/live?access_token=ops-secret").status_code == 200
        assert client.get("/live/rooms").status_code == 200  # the page's cookie


def test_replay_sends_its_bearer_token():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the stdlib's name)
            seen.append(self.headers.get("authorization"))
            self.rfile.read(int(self.headers["content-length"]))
            body = b'{"accepted": 0}'
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        send = http_sender(f"http://127.0.0.1:{server.server_port}", token="replay-secret")
        assert send([]) == {"accepted": 0}
    finally:
        server.shutdown()
    assert seen == ["Bearer replay-secret"]
