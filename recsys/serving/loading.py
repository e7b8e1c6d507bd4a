"""A ``TrainedLiveService`` from a training run: checkpoint, its saved index and a ranker.

::

    service = load_trained_service("outputs/train/.../best.pt", until=t)
    app = create_app(service, clock=FixedClock(t))

The checkpoint rebuilds the world it was trained on (``recsys.recommenders.restore``); the product
index is the one ``recsys-index`` saved beside it (``<run>/index/product``) unless another
folder is named; the ranker is a ``ranker.pt`` written by ``recsys-rank``, or the transparent
blend of ``conf/ranker/blend.yaml`` when none is given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from recsys.core import RequestScorer
from recsys.data.live import availability_intervals
from recsys.data.tables import LiveCommerceTables
from recsys.ranking.candidate_features import CandidateFeaturizer
from recsys.ranking.ranker import Ranker
from recsys.ranking.ranker_io import load_ranker as load
from recsys.ranking.session import SessionConfig
from recsys.recommenders.data import world_folder_of
from recsys.recommenders.restore import restore
from recsys.retrieval import CandidateIndex, LiveRetriever, LiveSchedule
from recsys.serving.fallback import PopularityLiveService
from recsys.serving.live import LiveCatalog
from recsys.serving.trained import FlowConfig, TrainedLiveService
from recsys.simulation.truth import read_coupon_drops


def load_ranker(path: str | Path | None) -> Ranker:
    """The saved ranker at ``path``, or the blend ranker of the shipped weights."""
    if path is None:
        return Ranker.blended()
    return load(path)[0]


def _product_index(checkpoint: Path, index_dir: str | Path | None) -> CandidateIndex:
    folder = Path(index_dir) if index_dir else checkpoint.parent / "index"
    if not (folder / "product").is_dir():
        raise FileNotFoundError(
            f"no product index in {folder}: build it with `recsys-index checkpoint={checkpoint}`"
            " or name its folder with index=..."
        )
    return CandidateIndex.load(folder / "product")


def load_trained_service(
    checkpoint: str | Path,
    *,
    until: int | Callable[[LiveCommerceTables], int],
    index_dir: str | Path | None = None,
    ranker: str | Path | None = None,
    session_config: SessionConfig | None = None,
    flow: FlowConfig | None = None,
    popularity_half_life_s: float = 6 * 3600.0,
    device: str = "cpu",
    cache_dir: str | None = None,
    data_path: str | Path | None = None,
) -> TrainedLiveService:
    """The trained pipeline of ``checkpoint`` serving from ``until`` (sessions and popularity
    from the world's events before it; a callable picks it from the world's tables);
    ``cache_dir`` overrides where the run found its synthetic world; ``data_path`` serves from
    another world folder over the same entities (``recsys.recommenders.restore``)."""
    restored = restore(checkpoint, device=device, cache_dir=cache_dir, data_path=data_path)
    tables = restored.data.tables
    if not isinstance(restored.recommender, RequestScorer):
        raise ValueError(
            f"{restored.path}: model {type(restored.recommender).__name__} cannot answer "
            "requests (it is no RequestScorer); serve a two-tower checkpoint"
        )
    if tables is None or restored.recommender.context is None:
        raise ValueError(
            f"{restored.path}: serving needs a model trained on a live-commerce world "
            f"(data {restored.data_config.name!r} has no live schedule)"
        )
    v = restored.recommender.context.vocabs
    vocabs = {"user": v.user, "product": v.product, "streamer": v.streamer}
    codes, start, end = availability_intervals(tables, "product", v.product)
    schedule = LiveSchedule(v.product.decode(codes), start, end)
    index = _product_index(restored.path, index_dir)
    fallback = PopularityLiveService.from_tables(
        tables,
        until=until(tables) if callable(until) else int(until),
        session_config=session_config,
        popularity_half_life_s=popularity_half_life_s,
    )
    folder = world_folder_of(restored.data_config)
    drops = read_coupon_drops(folder) if folder is not None else None
    main_ranker = load_ranker(ranker)
    return TrainedLiveService(
        model=restored.recommender,
        vocabs=vocabs,
        products=LiveRetriever(index, schedule),
        catalog=LiveCatalog(tables.live_sessions, tables.showcase),
        featurizer=CandidateFeaturizer(tables, coupon_drops=drops),
        ranker=main_ranker,
        outside_session=Ranker.blended() if main_ranker.mode == "learned" else None,
        fallback=fallback,
        config=flow,
        facts={"checkpoint": restored.path.name, "data": restored.data_config.name},
    )
