"""The live-room dashboard in the HTTP service: JSON, Server-Sent Events and two pages.

``attach_live_rooms(app, store)`` adds to an app made by ``recsys.serving.create_app``::

    POST /live/events                {"events": [...]} -> ingest report (rejects by row and field)
    GET  /live/rooms                 rooms live now, with online viewers
    GET  /live/rooms/{room}          the room's windows, products, questions, suggestions (404)
    GET  /live/rooms/{room}/stream   the same as Server-Sent Events, one per store change
    GET  /live                       page: the rooms live now
    GET  /live/rooms/{room}/page     page: the room's dashboard (charts update from the stream)
    GET  /live/static/{name}         the pages' script, style and the vendored Chart.js

Ingestion and snapshots run on the event loop, one at a time, so the store needs no lock. A
room that is not live answers 404; a body that is not {"events": [list]} 422; more than
``MAX_EVENTS`` events 413. Every number leaves as JSON without NaN (``allow_nan=False``): an
undefined ratio is ``null``, which the page shows as a dash.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from recsys.liveroom.rooms import RoomStore

MAX_EVENTS = 50_000
POLL_S = 0.05  # how often a stream looks for a new store version
KEEPALIVE_S = 15.0
STATIC = {
    "chart.umd.min.js": "text/javascript",
    "dashboard.js": "text/javascript",
    "rooms.js": "text/javascript",
    "dashboard.css": "text/css",
}

router = APIRouter(prefix="/live")


def _store(request: Request) -> RoomStore:
    return request.app.state.live_rooms


def _json(content, status: int = 200) -> Response:
    body = json.dumps(content, allow_nan=False, ensure_ascii=False)
    return Response(body, status_code=status, media_type="application/json")


def _unknown(room: int) -> JSONResponse:
    return JSONResponse(
        status_code=404,
        content={
            "error": "unknown room",
            "room": room,
            "detail": "not live now (or already ended)",
        },
    )


@router.post("/events")
async def post_events(request: Request) -> Response:
    try:
        body = await request.json()
    except ValueError as err:
        return _json({"error": "malformed JSON", "messages": [str(err)]}, 400)
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        return _json(
            {
                "error": "invalid request",
                "messages": ['body: expected {"events": [event objects]}'],
            },
            422,
        )
    if len(events) > MAX_EVENTS:
        return _json(
            {
                "error": "too many events",
                "messages": [f"events: {len(events)} > {MAX_EVENTS} per request"],
            },
            413,
        )
    return _json(_store(request).ingest_records(events))


@router.get("/rooms")
async def rooms(request: Request) -> Response:
    return _json({"rooms": _store(request).live()})


@router.get("/rooms/{room}")
async def room_snapshot(request: Request, room: int) -> Response:
    try:
        return _json(_store(request).snapshot(room))
    except KeyError:
        return _unknown(room)


@router.get("/rooms/{room}/stream")
async def room_stream(request: Request, room: int) -> Response:
    store = _store(request)
    try:
        first = store.snapshot(room)
    except KeyError:
        return _unknown(room)

    async def events():
        seen, quiet = first["version"], 0.0
        yield _sse(first)
        while not await request.is_disconnected():
            await asyncio.sleep(POLL_S)
            if store.version == seen:
                quiet += POLL_S
                if quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield ": keepalive\n\n"
                continue
            try:
                snap = store.snapshot(room)
            except KeyError:
                yield "event: ended\ndata: {}\n\n"
                return
            seen, quiet = snap["version"], 0.0
            yield _sse(snap)

    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _sse(snapshot: dict) -> str:
    return f"data: {json.dumps(snapshot, allow_nan=False, ensure_ascii=False)}\n\n"


@router.get("", response_class=HTMLResponse)
async def rooms_page() -> HTMLResponse:
    return HTMLResponse(_read("rooms.html"))


@router.get("/rooms/{room}/page", response_class=HTMLResponse)
async def room_page(request: Request, room: int) -> HTMLResponse:
    if room not in {r["room"] for r in _store(request).live()}:
        return HTMLResponse(f"<h1>Room {room} is not live</h1>", status_code=404)
    return HTMLResponse(_read("dashboard.html").replace("{{ROOM}}", str(int(room))))


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        return JSONResponse(status_code=404, content={"error": "no such file", "name": name})
    return Response(_read(name), media_type=STATIC[name], headers={"cache-control": "max-age=3600"})


def _read(name: str) -> str:
    return resources.files("recsys.liveroom").joinpath("static", name).read_text("utf-8")


def attach_live_rooms(app: FastAPI, store: RoomStore) -> FastAPI:
    """Serve ``store``'s rooms from ``app`` (see the module docstring)."""
    app.state.live_rooms = store
    app.include_router(router)
    return app
