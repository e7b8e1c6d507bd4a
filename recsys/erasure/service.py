"""``POST /forget``: erasure in a running service, behind the operator's token.

Removes raw user ids from the service's session stores, event logs and consent book
(``recsys.erasure.sessions.forget_in_service``) and from its live rooms (askers of questions,
and the shared list of posted live events). The files a run wrote are ``recsys-forget``'s; with
several workers, the one answering forgets in its memory and the shared logs are rewritten
for all; every worker rebuilds its consent book from the rewritten list on its next request,
and the others hold the sessions they folded until they are told too or restarted.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, FastAPI, Request

from recsys.erasure.sessions import forget_in_service
from recsys.serving.schemas import INT64_MAX

router = APIRouter()
MAX_USERS = 10_000


@router.post("/forget")
def forget(
    request: Request,
    users: Annotated[
        list[Annotated[int, Body(ge=0, le=INT64_MAX)]],
        Body(embed=True, min_length=1, max_length=MAX_USERS, description="raw user ids"),
    ],
) -> dict:
    removed = forget_in_service(request.app.state.ctx.recommender, users)
    rooms = getattr(request.app.state, "live_rooms", None)
    live = rooms.forget(users) if rooms is not None else {}
    return {"users": len(set(users)), **removed, **live}


def attach_erasure(app: FastAPI) -> FastAPI:
    app.include_router(router)
    return app
