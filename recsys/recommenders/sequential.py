"""The sequential model behind the ``Recommender`` interface: fit = train, score = next entity.

``fit(train)`` builds windows from the training streams, trains with the shared ``Trainer``
(early stopping on a validation split when one is given) and keeps the best weights.
``score(users, history)`` feeds each user's latest ``maxlen`` tokens of ``history`` through the
model and scores every entity of the head ("product" or "streamer") from the last hidden state;
evaluation then removes seen items or restricts to live candidates, as for every model.

With a ``TokenContext`` (a live-commerce world), the input streams are the world's tokens up to
the latest time in the given history (its horizon), so a product model also sees room entries;
the history then only fixes that horizon. Without one, the history rows are the streams.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recsys.core import Recommender
from recsys.data.interactions import ItemFeatures, UserSequences
from recsys.inputs.tokens import KIND_TABLES, TokenContext, TokenLog
from recsys.inputs.windows import TARGETS, WindowDataset, scoring_batch, training_windows
from recsys.models.sequential import SequentialConfig, SequentialModel
from recsys.recommenders.sequential_stream import StreamPlan
from recsys.tasks.sequential import LossConfig
from recsys.training.distributed_trainer import make_trainer, share_from_rank_zero, streamed_input
from recsys.training.trainer import FitResult, TrainerConfig
from recsys.training.validation import Validation, calibrate_scales, validation_metrics

__all__ = ["SequentialRecommender", "Validation", "horizon"]

# Training windows: each user's latest tokens only ("last", SASRec), or every token as a target.
WINDOWS = ("last", "all")


def horizon(history: UserSequences) -> int:
    """The latest time in a history: context tokens after it are never used."""
    return int(history.ts.max()) if len(history.ts) else int(np.iinfo(np.int64).min)


class SequentialRecommender(Recommender):
    name = "sasrec"

    def __init__(
        self,
        *,
        model: SequentialConfig | None = None,
        module: Callable[..., nn.Module] = SequentialModel,
        loss: LossConfig | None = None,
        trainer: TrainerConfig | None = None,
        head: str = "product",
        context: TokenContext | None = None,
        side_features: Sequence[str] = ("category", "price_band"),
        windows: str = "last",
        targets: str = "next",
        live_training: bool = False,
        target_lag_s: float = 0.0,
        repeat_scales: Sequence[float] = (),
        validation: Validation | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        extra_state: Mapping[str, object] | None = None,
    ) -> None:
        if head not in KIND_TABLES.values():
            raise ValueError(f"head must be one of {sorted(KIND_TABLES.values())}, got {head!r}")
        if windows not in WINDOWS:
            raise ValueError(f"windows must be one of {WINDOWS}, got {windows!r}")
        if targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
        if head == "streamer" and context is None:
            raise ValueError("the next-room head needs a world's TokenContext")
        self.model_config, self.module = model or SequentialConfig(), module
        self.loss, self.trainer = loss or LossConfig(), trainer or TrainerConfig()
        self.head, self.context, self.side_features = head, context, tuple(side_features)
        if live_training and context is None:
            raise ValueError("live_training needs a world's TokenContext (its availability)")
        if target_lag_s < 0 or (target_lag_s > 0 and targets != "next"):
            raise ValueError(
                f"target_lag_s must be >= 0, and > 0 only with targets='next'; got "
                f"{target_lag_s} with targets={targets!r}"
            )
        if self.loss.lag_loss_weight > 0 and target_lag_s <= 0:
            raise ValueError("loss.lag_loss_weight trains on lagged targets: set target_lag_s > 0")
        self.windows, self.targets, self.live_training = windows, targets, live_training
        # Train each slot on the first choice at least this long after it: a scored history
        # ends some time before the choices it is scored on (0: the next choice).
        self.target_lag_s = float(target_lag_s)
        self.repeat_scales = tuple(float(x) for x in repeat_scales)
        self.validation, self.run_dir, self.resume = validation, run_dir, resume
        self.extra_state = dict(extra_state or {})
        self.model: nn.Module | None = None
        self.fit_result: FitResult | None = None
        self.calibrated: dict[str, float] = {}
        self._cache: tuple[int, TokenLog] | None = None

    # -- building ----------------------------------------------------------------------------

    def tokens(self, history: UserSequences) -> TokenLog:
        """The token streams behind a history (see the module docstring)."""
        if self.context is None:
            return TokenLog.from_sequences(history)
        h = horizon(history)
        if self._cache is None or self._cache[0] != h:
            self._cache = (h, self.context.log.until(h))
        return self._cache[1]

    def _side(
        self, train: UserSequences, item_features: ItemFeatures | None
    ) -> dict[str, dict[str, np.ndarray]]:
        """The wanted side features: a world's (with each product's seller as of the training
        horizon), or the items' categorical features."""
        if self.context is not None:
            source = {e: dict(f) for e, f in self.context.side_features.items()}
            if "seller" in self.side_features:
                source.setdefault("product", {})["seller"] = self.context.sellers(horizon(train))
        else:
            source = {"product": item_features.categorical} if item_features else {}
        picked = {
            e: {k: v for k, v in f.items() if k in self.side_features} for e, f in source.items()
        }
        return {e: f for e, f in picked.items() if f}

    def build(
        self, train: UserSequences, *, item_features: ItemFeatures | None = None
    ) -> nn.Module:
        """A freshly initialised model sized for the data (also used to load saved weights)."""
        if self.context is not None:
            sizes = {"n_products": self.context.n_products, "n_streamers": self.context.n_streamers}
        else:
            sizes = {"n_products": train.n_items, "n_streamers": 0}
        if self.model_config.user_embedding:
            sizes["n_users"] = self.tokens(train).n_users
        self.model_config = replace(self.model_config, **sizes)
        torch.manual_seed(self.trainer.seed)
        self.model = self.module(self.model_config, side_features=self._side(train, item_features))
        return self.model

    # -- Recommender -------------------------------------------------------------------------

    def fit(
        self, train: UserSequences, *, item_features: ItemFeatures | None = None
    ) -> SequentialRecommender:
        model = self.build(train, item_features=item_features)
        log = self.tokens(train)
        plan = self._plan(log, model, self._side(train, item_features))
        streamed = streamed_input(self.trainer)
        if streamed is not None:  # the ranks without the data build their model from the plan
            share_from_rank_zero(plan, self.trainer)
        extra = {
            "model_config": asdict(self.model_config),
            "loss_config": asdict(self.loss),
            "head": self.head,
            **self.extra_state,
        }
        sizes = model.tables.sizes
        trainer = make_trainer(
            config=self.trainer,
            model=model,
            task=plan.task(model),
            dataset=plan.source(log, streamed, sizes) if streamed else _windows(log, plan, sizes),
            validate=self.validate if self.validation is not None else None,
            run_dir=self.run_dir,
            extra_state=extra,
        )
        self.fit_result = trainer.fit(resume=self.resume)
        if self.validation is not None and model.repeat is not None and self.repeat_scales:
            self.calibrate_repeats()
            trainer.save_best()
        return self

    def _plan(self, log: TokenLog, model: nn.Module, side) -> StreamPlan:
        """How this model trains, in a form ranks without the data can build it from."""
        counts = {
            table: np.bincount(log.entity[log.kind == kind], minlength=model.tables.sizes[table])
            for table, kind in self.model_config.head_kinds.items()
        }
        window_args = {
            "maxlen": self.model_config.maxlen,
            "heads": self.model_config.head_kinds,
            "n_gap_buckets": self.model_config.n_gap_buckets,
            "every_target": self.windows == "all",
            "target_lag_s": int(self.target_lag_s),
            # A weighted lagged-target loss: the lagged targets join the next ones.
            "keep_next": self.loss.lag_loss_weight > 0,
        }
        validates = self.validation is not None
        return StreamPlan(
            module=self.module,
            model_config=self.model_config,
            side_features=side,
            loss=self.loss,
            counts=counts,
            window_args=window_args,
            targets=self.targets,
            live=self.context.availability if self.live_training else None,
            validates=validates,
            calibrates=validates and model.repeat is not None and bool(self.repeat_scales),
        )

    def calibrate_repeats(self) -> dict[str, float]:
        """Per head, the repeat-bonus scale of ``repeat_scales`` that validates best."""
        self.calibrated = calibrate_scales(
            lambda head: self.model.repeat[head].score_scale,
            self.repeat_scales,
            self.for_head,
            self.validation,
        )
        return self.calibrated

    def score(self, users: np.ndarray, history: UserSequences) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("sasrec: fit (or build and load) the model before scoring")
        n = self.model.tables.sizes[self.head]
        if history.n_items != n:
            raise ValueError(
                f"sasrec: history has {history.n_items} items, the {self.head} "
                f"table has {n} rows; the vocabularies differ"
            )
        c = self.model_config
        batch = scoring_batch(self.tokens(history), users, c.maxlen, c.n_gap_buckets)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            # Scores in float32 even under mixed precision: bfloat16 would tie many items.
            scores = self.model.score_last(batch.to(device), self.head).cpu().numpy()  # (B, n)
        self.model.train(was_training)
        return scores

    def candidate_embeddings(self, head: str | None = None, at: int | None = None) -> np.ndarray:
        """(n, d) float32 output embeddings of ``head`` (rows 0 and 1 reserved); ``at`` is
        accepted for the interface: a sequential model's entities do not change over time."""
        with torch.no_grad():
            return self.model.head_weight(head or self.head).float().cpu().numpy()

    def for_head(self, head: str) -> SequentialRecommender:
        """A view scoring another head of the same trained model."""
        view = SequentialRecommender(
            model=self.model_config,
            loss=self.loss,
            trainer=self.trainer,
            head=head,
            context=self.context,
            side_features=self.side_features,
            windows=self.windows,
            targets=self.targets,
            live_training=self.live_training,
            target_lag_s=self.target_lag_s,
            module=self.module,
            repeat_scales=self.repeat_scales,
        )
        view.model = self.model
        return view

    def validate(self) -> dict[str, float]:
        """Validation metrics per head (``<head>/ndcg@10``) and their mean (``ndcg@10``); under
        the sampled protocol these are the sampled metrics."""
        return validation_metrics(self.for_head, self.validation)

    def hparams(self) -> dict:
        model = {k: v for k, v in asdict(self.model_config).items() if not k.startswith("n_")}
        model.update(n_blocks=self.model_config.n_blocks, n_heads=self.model_config.n_heads)
        return {
            **model,
            "loss": self.loss.name,
            "windows": self.windows,
            "targets": self.targets,
            "live_training": self.live_training,
            "target_lag_s": self.target_lag_s,
            "lag_loss_weight": self.loss.lag_loss_weight,
            "lr": self.trainer.lr,
            "batch_size": self.trainer.batch_size,
            "head": self.head,
        }


def _windows(log: TokenLog, plan: StreamPlan, sizes: Mapping[str, int]) -> WindowDataset:
    """Every training window in memory."""
    windows = training_windows(log, **plan.window_args)
    if len(windows) == 0:
        raise ValueError("sasrec: no user has two or more training tokens")
    return WindowDataset(windows, targets=plan.targets, live=plan.live, n_entities=sizes)
