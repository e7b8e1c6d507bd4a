"""Timely reach: triggers from the event stream, decisions to message, personalised copy.

    from recsys.reach import TriggerEngine, EventBatch, decide, Catalogue, DecisionConfig

    engine = TriggerEngine(sessions, showcase, products)          # the live schedule
    triggers = engine.push(EventBatch.from_frame(events))         # at-least-once input
    triggers = pd.concat([triggers, engine.advance(now)])         # announcements, lapses ...
    rows = decide(triggers, consent, history, model, Catalogue.of(sessions, products),
                  DecisionConfig(), now=now)                      # send?, channel, time, reason

Flow: ``stream`` checks events into numpy columns, ``ids`` applies each event id once,
``triggers`` keeps the state (fans, open carts, coupons, last visits) and fires triggers;
``features`` and ``learn`` turn observed logs into the ``model``'s training rows (randomised
sends), ``decide`` prices, times, caps and explains; ``copy`` and ``texts`` write the message;
``policy`` holds the market policies (learned, no-send, blast, rule, randomised); ``study``,
``analysis`` and ``report`` run and judge them side by side (``recsys-reach``).
"""

from recsys.reach.copy import CopyTemplates, CopyWriter
from recsys.reach.decide import DECISION, REASONS, Catalogue, DecisionConfig, decide
from recsys.reach.features import FEATURES, Clock, ReachHistory
from recsys.reach.ids import SeenIds
from recsys.reach.model import Logistic, ResponseModel, fit_response
from recsys.reach.policy import BlastPolicy, NoSendPolicy, RandomisedReach, ReachPolicy, RulePolicy
from recsys.reach.stream import EventBatch
from recsys.reach.study import StudyConfig, run_study
from recsys.reach.triggers import TRIGGER_COLUMNS, TRIGGER_KINDS, TriggerConfig, TriggerEngine

__all__ = [
    "DECISION",
    "FEATURES",
    "REASONS",
    "TRIGGER_COLUMNS",
    "TRIGGER_KINDS",
    "BlastPolicy",
    "Catalogue",
    "Clock",
    "CopyTemplates",
    "CopyWriter",
    "DecisionConfig",
    "EventBatch",
    "Logistic",
    "NoSendPolicy",
    "RandomisedReach",
    "ReachHistory",
    "ReachPolicy",
    "ResponseModel",
    "RulePolicy",
    "SeenIds",
    "StudyConfig",
    "TriggerConfig",
    "TriggerEngine",
    "decide",
    "fit_response",
    "run_study",
]
