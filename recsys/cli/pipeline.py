"""`recsys-pipeline`: the main job on the embedded synthetic world, one table at the end.

    simulate (cached) -> recsys-train (two-tower, both heads) -> recsys-index -> recsys-rank
    (ESMM on impression logs, with the two-tower score as a feature) -> evaluate -> market

Evaluation, all on the same world and the training run's own live time split:

* next product and next live room, each target ranked among what was live at its time: every
  baseline tuned on validation and the trained two-tower, with a paired test against the best;
* top-10 lists of held-out requests over every live product, scored by the world's true
  response model: the two-tower's own ordering, the rankers that re-rank it with session
  signals, recent popularity and the best possible (truth), with 95 % intervals;
* the market (``recsys.market``): from the day of the test cut, the trained pipeline as served
  (``PipelinePolicy``: two-tower, index, learned ranker, session signals) runs the world for a
  few days beside popularity, random and the oracle on the same viewers; true GMV per
  viewer-day, CTR and CVR with 95% intervals and the paired gain over popularity.

Each stage writes where its own command would (``<out_dir>/two_tower``, its ``index/``,
``<out_dir>/rank``), so ``recsys-serve checkpoint=<out_dir>/two_tower
ranker_checkpoint=<out_dir>/rank/ranker.pt`` serves what the table measured.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from recsys.core import Recommender

log = logging.getLogger(__name__)

HEADS = {"product": "product", "room": "streamer"}
RETRIEVAL_COLUMNS = (("product", "ndcg@10"), ("product", "hr@100"), ("room", "ndcg@10"))
RANKING_COLUMNS = ("ctr", "cvr", "ctcvr", "ndcg@10")


def compose_job(name: str, overrides: list[str]) -> DictConfig:
    """Another shipped command's configuration, inside or outside a running Hydra app."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name=name, overrides=overrides)
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        return compose(config_name=name, overrides=overrides)


class Pretrained(Recommender):
    """An already trained model as a benchmark candidate: ``fit`` keeps it as it is."""

    def __init__(self, model: Recommender, name: str) -> None:
        self.model, self.name = model, name

    def fit(self, train, item_features=None) -> Pretrained:
        return self

    def score(self, users, history):
        return self.model.score(users, history)

    def hparams(self) -> dict:
        return {}


def train_two_tower(cfg: DictConfig, out: Path) -> Path:
    from recsys.recommenders.experiment import train
    from recsys.training.checkpoint import BEST

    world = cfg.world
    run_dir = out / "two_tower"
    overrides = [
        *world_data(world),
        f"data.cache_dir={world.cache_dir}" if world.cache_dir else "data.cache_dir=null",
        f"run_dir={run_dir}",
        *cfg.two_tower,
    ]
    train(compose_job("train", overrides))
    return run_dir / BEST


def world_data(world: DictConfig) -> list[str]:
    """The two-tower's data: the world folder of ``world.path`` (e.g. recsys-ingest's), else
    the simulated preset."""
    if world.get("path"):
        return ["data=world", f"data.path={world.path}"]
    return [f"data=synthetic-{world.preset}", f"data.world_seed={world.seed}"]


def build_index(cfg: DictConfig, checkpoint: Path) -> dict:
    from recsys.cli.index import build_indexes

    cache = cfg.world.cache_dir
    overrides = [f"checkpoint={checkpoint}", f"cache_dir={cache}" if cache else "cache_dir=null"]
    return build_indexes(compose_job("index", [*overrides, *cfg.index]))


def train_ranker(cfg: DictConfig, checkpoint: Path, out: Path) -> dict:
    from recsys.cli.rank import run as rank

    cache = cfg.world.cache_dir
    overrides = [
        f"checkpoint={checkpoint}",
        f"cache_dir={cache}" if cache else "cache_dir=null",
        f"run_dir={out / 'rank'}",
        *cfg.rank,
    ]
    return rank(compose_job("rank", overrides))


def evaluate_retrieval(cfg: DictConfig, restored) -> dict[str, dict]:
    """Baselines tuned on validation and the trained two-tower (``restored``: the
    checkpoint with its data), per target, live protocol."""
    from recsys.evaluation.selection import Candidate, QualitySettings, run_quality
    from recsys.recommenders.candidates import build_candidates, quick_grids

    settings = QualitySettings(
        protocol="live", metric=cfg.metric, max_valid_users=cfg.max_valid_users
    )
    results: dict[str, dict] = {}
    for target, head in HEADS.items():
        split = restored.data.splits[head]
        trained = Pretrained(restored.recommender.for_head(head), "two_tower")
        candidates = build_candidates(
            split,
            list(cfg.models),
            grids=quick_grids() if cfg.quick else None,
            refine=bool(cfg.get("refine", False)),
        )
        candidates.append(Candidate("two_tower", lambda model=trained: model, ({},)))
        for res in run_quality(split, candidates, settings):
            results[f"{target}/{res.name}"] = res.to_json()
    return results


def run_market(cfg: DictConfig, checkpoint: Path, test_ts: int, ranker: Path, out: Path) -> dict:
    """The trained pipeline, popularity, random and the oracle on the same market days, from
    the day of the checkpoint's test cut ``test_ts``."""
    from recsys.data.schema import TABLES
    from recsys.data.tables import read_table
    from recsys.datasets import ensure_world
    from recsys.market import MarketConfig, OraclePolicy, PopularityPolicy, RandomPolicy
    from recsys.market.compare import head_to_head, markdown, starting_on
    from recsys.market.pipeline import PipelinePolicy

    w, m = cfg.world, cfg.market
    config = starting_on(MarketConfig(preset=w.preset, seed=int(w.seed), open_rate=m.open_rate,
                                      slate_size=m.slate_size), test_ts)  # fmt: skip
    start_ts = config.sim_config().chunk_window(config.start_day)[0]
    world = ensure_world(w.preset, int(w.seed), w.cache_dir)
    history = [read_table(world / "events" / f"part-{d:05d}.parquet", TABLES["events"])
               for d in range(max(0, config.start_day - 7), config.start_day)]  # fmt: skip
    policies = {
        "pipeline": PipelinePolicy.load(checkpoint, start_ts=start_ts, ranker=ranker,
                                        cache_dir=w.cache_dir),
        "random": RandomPolicy(seed=int(w.seed)),
        "popularity": PopularityPolicy().warm(history),
        "oracle": lambda market: OraclePolicy(market.truth),  # reads its own market's truth
    }  # fmt: skip
    days = min(int(m.days), config.sim_config().n_days - config.start_day)  # the world may end
    table = head_to_head(config, policies, days=days, out_dir=out / "market",
                         reference="popularity")  # fmt: skip
    (out / "market" / "market.md").write_text(markdown(table, "popularity") + "\n")
    return {"start_day": config.start_day, "days": days,
            "arms": table.to_dict("records"), "table": markdown(table, "popularity")}  # fmt: skip


def run(cfg: DictConfig) -> dict:
    """Every stage in order; returns (and writes) every measurement behind the table."""
    from recsys.recommenders.restore import restore

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = train_two_tower(cfg, out)
    indexes = build_index(cfg, checkpoint)
    ranking = train_ranker(cfg, checkpoint, out)
    restored = restore(checkpoint, cache_dir=cfg.world.cache_dir)
    retrieval = evaluate_retrieval(cfg, restored)
    market = None
    if int(cfg.market.days) > 0 and cfg.world.get("path"):
        log.warning("market stage skipped: it simulates the preset's world, not %s", cfg.world.path)
    elif int(cfg.market.days) > 0:
        test_ts = restored.data.train_split.meta["test_ts"]
        market = run_market(cfg, checkpoint, test_ts, out / "rank" / "ranker.pt", out)
    results = {
        "world": OmegaConf.to_container(cfg.world, resolve=True),
        "checkpoint": str(checkpoint),
        "indexes": indexes,
        "retrieval": retrieval,
        "ranking": ranking["lists"],
        "ranker": ranking["ranker"],
        "market": market,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    if ranking["lists"].get("outcomes") == "logged":
        from recsys.ranking.logged import logged_markdown

        print(f"\n{ranking['truth']}:\n{logged_markdown(ranking['lists'])}")
    if market is not None:
        print(f"\nmarket, days {market['start_day']}-{market['start_day'] + market['days'] - 1}"
              f" (true GMV per viewer-day and its gain over popularity, CTR, CVR; 95% intervals):"
              f"\n{market['table']}")  # fmt: skip
    log.info("results written to %s", out / "results.json")
    return results


def _cell(value: float | None, scale: float = 1.0, digits: int = 4) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _retrieval_cells(retrieval: dict, name: str) -> list[str]:
    cells = []
    for target, metric in RETRIEVAL_COLUMNS:
        res = retrieval.get(f"{target}/{name}")
        cells.append(_cell(res["test"].get(metric) if res else None))
    res = retrieval.get(f"product/{name}")
    sig = res["vs_best"] if res else None
    cells.append("-" if res is None else ("best" if not sig else f"{sig['p_value']:.2g}"))
    return cells


def _ranking_cells(lists: dict, name: str | None) -> list[str]:
    row = lists.get(name) if name else None
    scales = {"ctr": (100, 2), "cvr": (100, 2), "ctcvr": (100, 3), "ndcg@10": (1, 4)}
    # Lists scored on logged outcomes (a world without truth) have none of these columns.
    return [_cell(row[m]["value"] if row and m in row else None, *scales[m])
            for m in RANKING_COLUMNS]  # fmt: skip


def table(results: dict) -> str:
    """One markdown table: next-item quality (live protocol) and simulated top-10 lists."""
    from recsys.ranking.experiment import TWO_TOWER

    head = ["model", "product NDCG@10", "product HR@100", "room NDCG@10", "p vs best",
            "CTR %", "CVR %", "CTCVR %", "NDCG@10 vs truth"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    retrieval, lists = results["retrieval"], results["ranking"]["lists"]
    names = dict.fromkeys(key.split("/", 1)[1] for key in retrieval)
    for name in names:
        ordering = TWO_TOWER if name == "two_tower" else None
        cells = _retrieval_cells(retrieval, name) + _ranking_cells(lists, ordering)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for ordering in lists:
        if ordering == TWO_TOWER:
            continue
        cells = ["-"] * 4 + _ranking_cells(lists, ordering)
        lines.append(f"| {ordering} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="pipeline")
def main(cfg: DictConfig) -> None:
    log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    run(cfg)


if __name__ == "__main__":
    main()
