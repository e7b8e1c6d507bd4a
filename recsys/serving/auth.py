"""A locked service: bearer tokens with scopes, and a rate limit per client.

Anyone who reaches the port could otherwise post events (and so move recommendations), take
coupons or read the operators' dashboards. ``AuthMiddleware`` answers before any route runs:

- **401** (``WWW-Authenticate: Bearer``) when a protected endpoint gets no token or one that
  matches none configured; **403** when the token is valid but lacks the endpoint's scope;
- **429** with ``Retry-After`` when a client has spent its token bucket (``rate_per_s`` refilled,
  ``burst`` deep); a client is its token's name, or its IP address without a token;
- every refusal is a JSON body ``{"error", "detail"}`` (and ``scope`` for 401 / 403).

Body size (413) and queue admission stay in ``recsys.serving.admission``, which wraps this
middleware, so an over-size body is refused before its token is even looked at.

Scopes are ``ingest`` (``POST /events``, ``POST /live/events``, ``POST /consent``), ``read``
(``GET /recommend`` unless ``recommend_open``, ``GET /coupon``) and ``operator`` (the live
dashboards ``/live``, ``/metrics``, anything admin or erasure, and any path no rule names:
deny by default). ``/healthz`` is open for probes.

Tokens come from ``$RECSYS_SERVE_TOKENS`` (``name:scope+scope:token`` entries separated by
commas) and / or a YAML or JSON file listing ``{name, scopes, sha256 | token, rate_per_s,
burst}``; only SHA-256 digests are kept in memory, a presented token is hashed and compared
with every digest by ``hmac.compare_digest`` (no early exit, no timing hint). A browser page
(the live dashboard, its ``EventSource`` stream) cannot send a header: a GET may carry the
token once as ``?access_token=``, which the answer turns into an ``HttpOnly``,
``SameSite=Strict`` cookie that later GETs of the page send.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import yaml

from recsys.serving.metrics import Metrics

SCOPES = frozenset({"ingest", "read", "operator"})
TOKENS_ENV = "RECSYS_SERVE_TOKENS"
COOKIE = "recsys_token"
# (method or "*", path or path prefix, scope); the first that matches decides.
RULES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/events", "ingest"),
    ("POST", "/live/events", "ingest"),
    ("POST", "/consent", "ingest"),
    ("GET", "/recommend", "read"),
    ("GET", "/coupon", "read"),
    ("*", "/live", "operator"),
    ("*", "/metrics", "operator"),
)
OPEN_PATHS = ("/healthz",)
_COOKIE_SAFE = re.compile(r"[A-Za-z0-9._~+/=-]+")


def hash_token(token: str) -> str:
    """The hex SHA-256 digest a tokens file stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Token:
    name: str
    scopes: frozenset[str]
    digest: bytes  # SHA-256 of the token
    rate_per_s: float | None = None  # None: the config's
    burst: float | None = None

    def __post_init__(self) -> None:
        unknown = self.scopes - SCOPES
        if unknown or not self.scopes:
            raise ValueError(
                f"token {self.name!r}: scopes must be among {sorted(SCOPES)}, got "
                f"{sorted(self.scopes)}"
            )


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool = False  # False: every endpoint open (rate limits still apply)
    tokens: tuple[Token, ...] = ()
    recommend_open: bool = True  # GET /recommend without a token
    rate_per_s: float | None = None  # per client and worker process; None: no limit
    burst: float = 100.0
    rules: tuple[tuple[str, str, str], ...] = RULES
    open_paths: tuple[str, ...] = OPEN_PATHS
    max_clients: int = 100_000  # buckets kept (least recently seen dropped first)

    def __post_init__(self) -> None:
        if self.enabled and not self.tokens:
            raise ValueError(
                f"auth is enabled but no token is configured: set {TOKENS_ENV} or auth.tokens_file"
            )
        if self.rate_per_s is not None and not (self.rate_per_s > 0 and self.burst >= 1):
            raise ValueError(f"rate_per_s must be > 0 and burst >= 1, got {self.rate_per_s}, "
                             f"{self.burst}")  # fmt: skip

    @classmethod
    def from_settings(
        cls,
        *,
        enabled: bool | str = "auto",
        tokens_file: str | None = None,
        environ: Mapping[str, str] | None = None,
        recommend_open: bool = True,
        rate_per_s: float | None = None,
        burst: float = 100.0,
    ) -> AuthConfig:
        """Tokens from ``$RECSYS_SERVE_TOKENS`` and ``tokens_file``; ``enabled="auto"`` turns
        auth on exactly when some token is configured."""
        env = os.environ if environ is None else environ
        tokens = parse_env_tokens(env.get(TOKENS_ENV, ""))
        tokens += read_tokens_file(tokens_file) if tokens_file else ()
        names = [t.name for t in tokens]
        if len(set(names)) != len(names):
            raise ValueError(f"token names must be unique, got {names}")
        on = bool(tokens) if enabled == "auto" else _flag(enabled)
        return cls(enabled=on, tokens=tokens, recommend_open=recommend_open,
                   rate_per_s=rate_per_s, burst=burst)  # fmt: skip


def _flag(value: bool | str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ValueError(f"auth.enabled must be auto, true or false, got {value!r}")


def parse_env_tokens(text: str) -> tuple[Token, ...]:
    """``name:scope+scope:token`` entries separated by commas (blank: none)."""
    out = []
    for i, entry in enumerate(e.strip() for e in text.split(",")):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{TOKENS_ENV} entry {i + 1}: expected name:scope+scope:token")
        name, scopes, token = parts
        out.append(
            Token(name, frozenset(scopes.split("+")), hashlib.sha256(token.encode()).digest())
        )
    return tuple(out)


def read_tokens_file(path: str | Path) -> tuple[Token, ...]:
    """A YAML (or JSON) list of ``{name, scopes, sha256 | token, rate_per_s?, burst?}``."""
    path = Path(path)
    entries = yaml.safe_load(path.read_text()) or []
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of tokens, got {type(entries).__name__}")
    out = []
    for i, e in enumerate(entries):
        where = f"{path}: entry {i + 1}"
        if not isinstance(e, dict) or "name" not in e or "scopes" not in e:
            raise ValueError(f"{where}: needs name and scopes")
        if ("sha256" in e) == ("token" in e):
            raise ValueError(f"{where} ({e['name']}): give exactly one of sha256 or token")
        hexdigest = str(e["sha256"]) if "sha256" in e else hash_token(str(e["token"]))
        if not re.fullmatch(r"[0-9a-fA-F]{64}", hexdigest):
            raise ValueError(f"{where} ({e['name']}): sha256 must be 64 hex digits")
        out.append(Token(str(e["name"]), frozenset(e["scopes"]), bytes.fromhex(hexdigest),
                         e.get("rate_per_s"), e.get("burst")))  # fmt: skip
    return tuple(out)


@dataclass
class TokenBuckets:
    """One token bucket per client: ``take`` answers 0 (go) or the seconds until a request
    would be allowed."""

    max_clients: int
    buckets: OrderedDict = field(default_factory=OrderedDict)  # client -> [level, time]

    def take(self, client: str, rate: float, burst: float, now: float) -> float:
        level, last = self.buckets.pop(client, (burst, now))
        level = min(burst, level + (now - last) * rate)
        wait = 0.0 if level >= 1.0 else (1.0 - level) / rate
        self.buckets[client] = [level - 1.0 if wait == 0.0 else level, now]
        if len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        return wait


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _presented(scope: dict) -> tuple[str | None, bool]:
    """(the token the request carries or None, whether it came in the query string)."""
    auth = _header(scope, b"authorization")
    if auth is not None:
        kind, _, value = auth.strip().partition(" ")
        return (value.strip() or None) if kind.lower() == "bearer" else None, False
    if scope["method"] not in ("GET", "HEAD"):
        return None, False
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("access_token"):
        return query["access_token"][0], True
    for part in (_header(scope, b"cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value, False
    return None, False


async def _refuse(send, status: int, body: dict, headers: dict[str, str]) -> None:
    raw = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    head += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


class AuthMiddleware:
    """Pure ASGI middleware applying an ``AuthConfig``; refusals are counted in ``Metrics``
    (``unauthorised``, ``forbidden``, ``rate_limited``)."""

    def __init__(self, app, *, config: AuthConfig, metrics: Metrics) -> None:
        self.app, self.config, self.metrics = app, config, metrics
        self.buckets = TokenBuckets(config.max_clients)

    def required_scope(self, method: str, path: str) -> str | None:
        """The scope ``method path`` needs, None when it is open."""
        c = self.config
        if not c.enabled or path in c.open_paths or (path == "/recommend" and c.recommend_open):
            return None
        method = "GET" if method == "HEAD" else method
        for rule_method, prefix, needed in c.rules:
            if rule_method in ("*", method) and (path == prefix or path.startswith(prefix + "/")):
                return needed
        return "operator"  # deny by default: a route nobody classified is an operator's

    def match(self, presented: str) -> Token | None:
        """The configured token equal to ``presented``: every digest compared, no early exit."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for token in self.config.tokens:
            if hmac.compare_digest(token.digest, digest):
                found = token
        return found

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in self.config.open_paths:
            await self.app(scope, receive, send)
            return
        presented, via_query = _presented(scope)
        token = self.match(presented) if presented else None
        wait = self._rate(scope, token)
        if wait > 0:
            self.metrics.reject("rate_limited")
            body = {"error": "too many requests", "detail": f"rate limit: retry in {wait:.2f} s"}
            await _refuse(send, 429, body, {"retry-after": str(max(1, math.ceil(wait)))})
            return
        needed = self.required_scope(scope["method"], scope["path"])
        if needed is not None and (token is None or needed not in token.scopes):
            await self._deny(send, needed, presented, token)
            return
        if token is not None:
            scope.setdefault("state", {})["client"] = token.name
        if via_query and token is not None and _COOKIE_SAFE.fullmatch(presented):
            send = self._with_cookie(send, presented)
        await self.app(scope, receive, send)

    def _rate(self, scope: dict, token: Token | None) -> float:
        rate = (token.rate_per_s if token else None) or self.config.rate_per_s
        if rate is None:
            return 0.0
        burst = (token.burst if token else None) or self.config.burst
        client = f"token:{token.name}" if token else f"ip:{(scope.get('client') or ('?',))[0]}"
        return self.buckets.take(client, rate, burst, time.monotonic())

    async def _deny(self, send, needed: str, presented: str | None, token: Token | None) -> None:
        realm = 'Bearer realm="recsys"'
        if token is not None:
            self.metrics.reject("forbidden")
            detail = f"token {token.name!r} lacks scope {needed!r}"
            header = f'{realm}, error="insufficient_scope", scope="{needed}"'
            await _refuse(send, 403, {"error": "forbidden", "detail": detail, "scope": needed},
                          {"www-authenticate": header})  # fmt: skip
            return
        self.metrics.reject("unauthorised")
        detail = "the token matches none configured" if presented else "a bearer token is needed"
        header = f'{realm}, error="invalid_token"' if presented else realm
        body = {"error": "unauthorised", "detail": detail, "scope": needed}
        await _refuse(send, 401, body, {"www-authenticate": header})

    def _with_cookie(self, send, token: str):
        """``send`` that hands a page's ``?access_token=`` back as a cookie for its own GETs."""
        cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/".encode("latin-1")

        async def send_with_cookie(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"set-cookie", cookie)]}  # fmt: skip
            await send(message)

        return send_with_cookie


def check_exposure(host: str, config: AuthConfig, enabled: bool | str) -> None:
    """Refuse to serve beyond this machine with every endpoint open by default: binding another
    address without tokens needs ``auth.enabled=false`` said out loud (``enabled`` is the
    setting as written, ``auto`` or a flag)."""
    local = host in ("localhost", "::1") or host.startswith("127.")
    if not local and not config.enabled and str(enabled).lower() == "auto":
        raise ValueError(
            f"host {host} is reachable from other machines and no token is configured: set "
            f"{TOKENS_ENV} or auth.tokens_file (or auth.enabled=false to serve it open)"
        )
