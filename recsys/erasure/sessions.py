"""Forgetting users in a running service's session store.

A service's live state about a viewer is their session (``recsys.ranking.store.SessionStore``)
and, with shared state, the events of the ordered log it is folded from
(``recsys.serving.state``). ``forget_in_service`` walks a service and its wrappers (consent,
shared state, coupon tap, the trained pipeline's fallback) and removes the users from each
store and log it finds, from the consent book it asks (their decisions; a book shared by
workers drops them from its list and every worker rebuilds), and from the viewers it knows
(they are strangers from then on). A worker process holds its own folded copy of sessions:
with several workers each must be told, or restarted once the log has been cleaned (it
replays the log).
"""

from __future__ import annotations

from collections.abc import Sequence

from recsys.privacy.consent import ConsentBook
from recsys.ranking.store import SessionStore
from recsys.serving.state import EventLog

WRAPPED = ("inner", "_inner", "fallback")  # attributes through which services wrap others


def _parts(service) -> list:
    """The service and everything it wraps, each once."""
    out, todo, seen = [], [service], set()
    while todo:
        s = todo.pop()
        if id(s) in seen:
            continue
        seen.add(id(s))
        out.append(s)
        todo += [getattr(s, name) for name in WRAPPED if getattr(s, name, None) is not None]
    return out


def forget_in_service(service, users: Sequence[int]) -> dict[str, int]:
    """Remove ``users`` from every session store, event log and consent book of ``service``;
    returns the sessions, logged events and consent decisions removed."""
    stores, logs, books = {}, {}, {}
    for part in _parts(service):
        if isinstance(getattr(part, "sessions", None), SessionStore):
            stores[id(part.sessions)] = part.sessions
        if isinstance(getattr(part, "log", None), EventLog):
            logs[id(part.log)] = part.log
        if isinstance(getattr(part, "book", None), ConsentBook):
            books[id(part.book)] = part.book
        if isinstance(getattr(part, "known_users", None), frozenset):
            part.known_users = part.known_users - set(int(u) for u in users)
    return {"sessions": sum(s.forget(users) for s in stores.values()),
            "logged_events": sum(log.forget(users) for log in logs.values()),
            "consent_decisions": sum(b.forget(users) for b in books.values())}  # fmt: skip
