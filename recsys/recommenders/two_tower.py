"""The two-tower model behind the ``Recommender`` interface, and the embeddings retrieval needs.

``fit(train)`` turns every fresh training choice into an example whose query features come
from before its time (``recsys.inputs.two_tower``), trains with the shared ``Trainer`` (early
stopping on a ``Validation`` when given) and keeps the best weights.
``score(users, history)`` builds each user's query as of the end of ``history`` (its latest
time, the horizon) and scores every entity of the head: ``<q, c> / temperature`` plus the
sparse repeat bonus. ``query_embeddings`` (already divided by the temperature) and
``candidate_embeddings`` give the inner-product part for an index; ``repeat_scores`` the sparse
part, non-zero only for entities in the user's bags, so ``score == query_embeddings @
candidate_embeddings.T + repeat_scores`` (tested).

With a ``TokenContext`` (a live-commerce world) the bags come from the world's tokens up to
the horizon, so a product query also sees rooms entered, and there are two heads, "product" and
"streamer" (next live room), trained together. A ``WorldFeatures`` adds the current room,
demographics, profile snapshots and the room tower's product on show: at training time the
product on show at the target's time; at scoring time the latest product shown by each
streamer up to the history's end. Without a context, the history rows are item streams.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from recsys.core import Recommender
from recsys.data.interactions import ItemFeatures, UserSequences
from recsys.inputs.tokens import TokenContext, TokenLog
from recsys.inputs.two_tower import (
    QueryBuilder,
    TwoTowerBatch,
    TwoTowerDataset,
    head_counts,
    padded_tokens,
    training_examples,
)
from recsys.inputs.world_features import WorldFeatures
from recsys.models.embeddings import EntityBags, EntityTables
from recsys.models.two_tower import TwoTowerConfig, TwoTowerModel
from recsys.recommenders.sequential import horizon
from recsys.recommenders.two_tower_requests import RequestScoring
from recsys.tasks.two_tower import TwoTowerLossConfig, TwoTowerTask
from recsys.training.distributed_trainer import make_trainer
from recsys.training.trainer import FitResult, TrainerConfig
from recsys.training.validation import Validation, calibrate_scales, validation_metrics

__all__ = ["TwoTowerRecommender", "Validation"]
PRODUCT_SIDES = ("category", "brand", "price_band", "imported", "seller")
# Tables a trained sequential model shares with this one (same names, shapes, vocabularies).
SHARED_TABLES = (
    "product",
    "streamer",
    "user",
    "product_category",
    "product_price_band",
    "product_brand",
    "product_imported",
    "streamer_category",
)


@dataclass
class _Builders:
    """Query builders shared by the views of one trained model."""

    world: QueryBuilder | None = None  # worlds: one builder over the whole token log
    # Item streams: the last scoring history (held, so it is recognised by identity) and its
    # builder.
    history: tuple[UserSequences, QueryBuilder] | None = None
    # (model, head, candidate tower output for every entity): static candidates, computed once.
    vectors: tuple[object, str, np.ndarray] | None = None


class TwoTowerRecommender(RequestScoring, Recommender):
    name = "two_tower"

    def __init__(
        self,
        *,
        model: TwoTowerConfig | None = None,
        module: Callable[..., TwoTowerModel] = TwoTowerModel,
        loss: TwoTowerLossConfig | None = None,
        trainer: TrainerConfig | None = None,
        head: str = "product",
        heads: Sequence[str] = (),
        context: TokenContext | None = None,
        world: WorldFeatures | None = None,
        side_features: Sequence[str] = PRODUCT_SIDES,
        keywords: bool = True,
        fresh_only: bool = True,
        query_lag_s: float = 0.0,
        repeat_scales: Sequence[float] = (),
        utc_offset_hours: int = 8,
        pretrained: EntityTables | EntityBags | None = None,
        validation: Validation | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        extra_state: Mapping[str, object] | None = None,
    ) -> None:
        """``heads``: the heads to train (default: every head the data has); ``pretrained``:
        tables (e.g. a trained sequential model's) whose shared tables initialise this one."""
        if head not in ("product", "streamer"):
            raise ValueError(f"head must be 'product' or 'streamer', got {head!r}")
        if head == "streamer" and context is None:
            raise ValueError("the room head needs a world's TokenContext")
        if world is not None and context is None:
            raise ValueError("WorldFeatures need the world's TokenContext too")
        self.model_config, self.module = model or TwoTowerConfig(), module
        self.loss, self.trainer = loss or TwoTowerLossConfig(), trainer or TrainerConfig()
        self.head, self.heads, self.context, self.world = head, tuple(heads), context, world
        self.side_features, self.keywords = tuple(side_features), keywords
        self.fresh_only, self.utc_offset_hours = fresh_only, utc_offset_hours
        self.query_lag_s = query_lag_s
        self.repeat_scales = tuple(float(x) for x in repeat_scales)
        self.calibrated: dict[str, float] = {}
        self.pretrained, self.validation = pretrained, validation
        self.run_dir, self.resume = run_dir, resume
        self.extra_state = dict(extra_state or {})
        self.model: TwoTowerModel | None = None
        self.fit_result: FitResult | None = None
        self._builders = _Builders()

    # -- building ------------------------------------------------------------------------------

    def _sizes(self, train: UserSequences) -> dict[str, int]:
        if self.context is None:
            return {"n_users": train.n_users, "n_products": train.n_items, "n_streamers": 0}
        c = self.context
        return dict(n_users=len(c.vocabs.user), n_products=c.n_products, n_streamers=c.n_streamers)

    def _side(self, train: UserSequences, item_features: ItemFeatures | None) -> dict:
        """Wanted categorical features per entity; a world's seller as of the training
        horizon (no later shelf leaks in)."""
        if self.context is not None:
            source = {e: dict(f) for e, f in self.context.side_features.items()}
            source["product"]["seller"] = self.context.sellers(horizon(train))
        else:
            source = {"product": dict(item_features.categorical)} if item_features else {}
        wanted = {"product": set(self.side_features), "streamer": {"category"}}
        return {
            e: {k: v for k, v in f.items() if k in wanted.get(e, ())} for e, f in source.items()
        }

    def _keywords(self, n_products: int, item_features: ItemFeatures | None) -> np.ndarray | None:
        if not self.keywords:
            return None
        if self.world is not None:
            return padded_tokens(self.world.keywords, n_products)
        if self.context is None and item_features is not None:
            return padded_tokens(item_features.tokens, n_products)
        return None

    def _config(self, train: UserSequences) -> TwoTowerConfig:
        c = replace(self.model_config, **self._sizes(train))
        if self.world is None:
            c = replace(c, demographics=False, profile=False, room_showing=False)
        if not (self.context is not None and self.context.log.timed):
            c = replace(c, context=False)
        if c.profile:
            self.world = self.world.with_profiles(horizon(train))
            c = replace(c, n_profile=self.world.profiles.n_features)
        return c

    def build(
        self, train: UserSequences, *, item_features: ItemFeatures | None = None
    ) -> TwoTowerModel:
        """A freshly initialised model sized for the data (also used to load saved weights)."""
        self.model_config = config = self._config(train)
        demographics = self.world.demographic_sizes() if self.world is not None else None
        torch.manual_seed(self.trainer.seed)
        self.model = self.module(
            config,
            side_features=self._side(train, item_features),
            keywords=self._keywords(config.n_products, item_features),
            demographics=demographics,
        )
        if config.profile:
            self._set_profile_scale(train)
        if self.pretrained is not None:
            both = set(self.model.tables.sizes) & set(self.pretrained.sizes)
            self.model.tables.load_from(self.pretrained, [n for n in SHARED_TABLES if n in both])
        self._builders = _Builders()
        return self.model

    def _set_profile_scale(self, train: UserSequences) -> None:
        """Standardise profile features by their spread over users at the training horizon."""
        users = np.arange(2, self.model_config.n_users)
        x = self.world.profiles.at(users, np.full(len(users), horizon(train)))  # (U, F)
        self.model.profile_mean.copy_(torch.from_numpy(x.mean(axis=0)))
        self.model.profile_std.copy_(torch.from_numpy(np.maximum(x.std(axis=0), 1e-3)))

    def queries(self, log: TokenLog | None = None) -> QueryBuilder:
        """The query builder of a world (cached) or of the given item streams."""
        c = self.model_config
        kw = {"bag_size": c.bag_size, "utc_offset_hours": self.utc_offset_hours}
        if self.context is None:
            return QueryBuilder(log, **kw)
        if self._builders.world is None:
            self._builders.world = QueryBuilder(
                self.context.log, world=self.world, profile=c.profile, **kw
            )
        return self._builders.world

    # -- Recommender ---------------------------------------------------------------------------

    def fit(
        self, train: UserSequences, *, item_features: ItemFeatures | None = None
    ) -> TwoTowerRecommender:
        model = self.build(train, item_features=item_features)
        heads = self.heads or model.heads
        if self.context is None:
            log = TokenLog.from_sequences(train)
            builder = self.queries(log)
        else:
            log, builder = self.context.log.until(horizon(train)), self.queries()
        examples = training_examples(log, heads, world=self.world, fresh_only=self.fresh_only)
        sizes = {"product": model.config.n_products, "streamer": model.config.n_streamers}
        task = TwoTowerTask(
            self.loss,
            n_entities={h: sizes[h] for h in heads},
            counts=head_counts(examples, sizes),
        )
        extra = {
            "model_config": asdict(model.config),
            "loss_config": asdict(self.loss),
            "head": self.head,
            **self.extra_state,
        }
        trainer = make_trainer(
            config=self.trainer,
            model=model,
            task=task,
            dataset=self._dataset(examples, builder, sizes),
            validate=self.validate if self.validation is not None else None,
            run_dir=self.run_dir,
            extra_state=extra,
        )
        self.fit_result = trainer.fit(resume=self.resume)
        if self.validation is not None and model.bonus_pairs and self.repeat_scales:
            self.calibrate_repeats()
            trainer.save_best()
        return self

    def _dataset(self, examples, builder: QueryBuilder, sizes: dict) -> TwoTowerDataset:
        live = None
        if self.loss.negatives == "live":
            if self.context is None:
                raise ValueError("two_tower: live negatives need a world's TokenContext")
            live = {h: self.context.availability[h] for h in examples.heads}
        return TwoTowerDataset(examples, builder, self.query_lag_s, live=live, n_entities=sizes)

    def calibrate_repeats(self) -> dict[str, float]:
        """Per validated head, the repeat-bonus scale of ``repeat_scales`` that validates best
        (NDCG@10); the scale is kept in the model."""
        self.calibrated = calibrate_scales(
            self.model.bonus_scale, self.repeat_scales, self.for_head, self.validation
        )
        return self.calibrated

    def _batch(self, users: np.ndarray, history: UserSequences) -> tuple[TwoTowerBatch, int]:
        """Query features of ``users`` as of the end of ``history``, and that horizon."""
        if self.model is None:
            raise RuntimeError("two_tower: fit (or build and load) the model before scoring")
        n = self.model.n_entities(self.head)
        if history.n_items != n:
            raise ValueError(
                f"two_tower: history has {history.n_items} items, the {self.head} table has "
                f"{n} rows; the vocabularies differ"
            )
        users = np.asarray(users, dtype=np.int64)
        h = horizon(history)
        if self.context is None:
            cached = self._builders.history
            if cached is None or cached[0] is not history:
                cached = (history, self.queries(TokenLog.from_sequences(history)))
                self._builders.history = cached
            builder = cached[1]
        else:
            builder = self._scoring_builder(h)
        q = builder.features(users, np.full(len(users), h + 1, dtype=np.int64))
        return TwoTowerBatch.from_features(self.head, q), h

    def _scoring_builder(self, h: int) -> QueryBuilder:
        """The world's builder, with a profile snapshot cut right after ``h`` when needed."""
        builder = self.queries()
        profiles = builder.world.profiles if builder.profile else None
        if profiles is not None and int(profiles.cuts[-1]) < h + 1:
            builder.world = replace(builder.world, profiles=profiles.extended_to(h + 1))
        return builder

    def _showing(self, h: int) -> torch.Tensor | None:
        """Each streamer's latest product on show up to ``h`` (room head with a world)."""
        if self.head != "streamer" or self.world is None:
            return None
        streamers = np.arange(self.model.config.n_streamers)
        return torch.from_numpy(self.world.showcase.showing(streamers, np.full(len(streamers), h)))

    def _run(self, fn):
        device = next(self.model.parameters()).device
        was_training = self.model.training
        if was_training:  # switching modes walks every submodule: skip it when serving
            self.model.eval()
        with torch.no_grad():
            out = fn(device)
        if was_training:
            self.model.train()
        return out

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        batch, h = self._batch(users, history)
        showing = self._showing(h)

        def run(device):
            s = showing.to(device) if showing is not None else None
            return self.model.score_all(batch.to(device), self.head, s).float().cpu().numpy()

        return self._run(run)

    # -- embeddings for retrieval and ranking --------------------------------------------------

    def query_embeddings(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        """(B, d) float32 query embeddings divided by the temperature, as of ``history``'s end."""
        batch, _ = self._batch(users, history)

        def run(device):
            q = self.model.query(batch.to(device), self.head).float()
            return (q / self.model.temperature.float()).cpu().numpy()

        return self._run(run)

    def candidate_embeddings(self, head: str | None = None, at: int | None = None) -> np.ndarray:
        """(n, d) float32 embeddings of every entity of ``head`` (rows 0 and 1 reserved); the
        room tower shows each streamer's latest product up to time ``at`` (default: none)."""
        head = head or self.head
        n = self.model.n_entities(head)
        view = self.for_head(head)
        showing = view._showing(at) if at is not None else None

        def run(device):
            ids = torch.arange(n, device=device)
            s = showing.to(device) if showing is not None else None
            return self.model.candidates(head, ids, s).float().cpu().numpy()

        return self._run(run)

    def repeat_scores(self, users: np.ndarray, history: UserSequences) -> sp.csr_matrix:
        """(B, n) float32 sparse repeat bonus: non-zero only for entities in each user's bags
        (for a product, also the products of the rooms visited)."""
        batch, _ = self._batch(users, history)
        dense = self._run(lambda d: self.model.dense_bonus(batch.to(d), self.head).cpu().numpy())
        return sp.csr_matrix(dense.astype(np.float32))

    # -- views, validation -------------------------------------------------------------------

    def for_head(self, head: str) -> TwoTowerRecommender:
        """A view scoring another head of the same trained model."""
        view = TwoTowerRecommender(
            model=self.model_config,
            loss=self.loss,
            trainer=self.trainer,
            head=head,
            heads=self.heads,
            context=self.context,
            world=self.world,
            side_features=self.side_features,
            keywords=self.keywords,
            fresh_only=self.fresh_only,
            query_lag_s=self.query_lag_s,
            repeat_scales=self.repeat_scales,
            utc_offset_hours=self.utc_offset_hours,
        )
        view.model, view._builders = self.model, self._builders
        return view

    def validate(self) -> dict[str, float]:
        """Validation metrics per head (``<head>/ndcg@10``), their mean (``ndcg@10``) and the
        temperature."""
        metrics = validation_metrics(self.for_head, self.validation)
        if self.model is not None:
            metrics["temperature"] = self.model.temperature.item()
        return metrics

    def hparams(self) -> dict:
        model = {k: v for k, v in asdict(self.model_config).items() if not k.startswith("n_")}
        return {
            **model,
            **asdict(self.loss),
            "heads": list(self.heads),
            "side_features": list(self.side_features),
            "lr": self.trainer.lr,
            "batch_size": self.trainer.batch_size,
            "head": self.head,
        }
