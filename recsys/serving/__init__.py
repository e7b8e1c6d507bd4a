"""The recommendation service: HTTP endpoints around a pluggable ``RecommenderService``.

::

    from recsys.serving import FixedClock, PopularityLiveService, create_app

    service = PopularityLiveService.from_tables(tables, until=t)
    app = create_app(service, clock=FixedClock(t))     # uvicorn.run(app) or TestClient(app)

``recsys-serve`` (``recsys.cli.serve``) runs it over a world from the command line, in one
process or several (``recsys.serving.workers``) sharing live state (``recsys.serving.state``).
"""

from recsys.serving.admission import AdmissionConfig
from recsys.serving.app import create_app
from recsys.serving.clock import FixedClock, ReplayClock, WallClock
from recsys.serving.fallback import Boosts, PopularityLiveService
from recsys.serving.live import LiveCatalog, LiveProducts, LiveRooms
from recsys.serving.popularity import DecayedPopularity
from recsys.serving.protocol import (
    ITEM_KINDS,
    Recommendation,
    RecommendedItem,
    RecommenderService,
)
from recsys.serving.runtime import ServiceContext
from recsys.serving.state import EventLog, LocalEventLog, SharedStateService

__all__ = [
    "ITEM_KINDS",
    "AdmissionConfig",
    "Boosts",
    "DecayedPopularity",
    "EventLog",
    "FixedClock",
    "LiveCatalog",
    "LiveProducts",
    "LiveRooms",
    "LocalEventLog",
    "PopularityLiveService",
    "Recommendation",
    "RecommendedItem",
    "RecommenderService",
    "ReplayClock",
    "ServiceContext",
    "SharedStateService",
    "WallClock",
    "create_app",
]
