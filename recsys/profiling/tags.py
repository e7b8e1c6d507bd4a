"""Interpretable tags from profile features by rules kept in config (``conf/profiling/tags.yaml``).

A rule names a tag (id, Chinese and English display names), a condition over features and a
confidence formula, both in the small language of ``recsys.profiling.expressions``. Adding a
tag is adding a rule to the YAML file; no code changes. Two kinds of rule:

* ``over: users`` (default) reads ``Profiles.users``, one tag per user; with
  ``for_each: category`` (or ``topic``) it is repeated per value, ``{category}``,
  ``{category_zh}`` and ``{category_en}`` substituted from ``labels`` in the same file;
* ``over: streamers`` reads ``Profiles.streamers``, one tag per (user, streamer) pair, and its
  texts may name pair columns, e.g. ``id: "loyal_streamer:{streamer_id}"``.

Every tag row carries its confidence in [0, 1] and a provenance text generated from the rule:
the condition, the user's value of every feature it reads, and the confidence formula.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from recsys.profiling.config import TAGS_YAML
from recsys.profiling.expressions import Expression, ExpressionError
from recsys.profiling.features import Profiles

TAG_COLUMNS = [
    "user_id",
    "tag_id",
    "rule_id",
    "name_zh",
    "name_en",
    "confidence",
    "entity",
    "provenance",
]
FAMILIES = {"category": "categories", "topic": "topics"}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class TagRule:
    id: str
    name_zh: str
    name_en: str
    when: str
    confidence: str
    over: str = "users"
    for_each: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.over not in ("users", "streamers"):
            raise ValueError(
                f"rule {self.id!r}: over must be 'users' or 'streamers', got {self.over!r}"
            )
        if self.for_each is not None and self.for_each not in FAMILIES:
            raise ValueError(f"rule {self.id!r}: for_each must be one of {sorted(FAMILIES)}")
        for text in (self.when, self.confidence):
            if self.for_each is None or f"{{{self.for_each}}}" not in text:
                Expression(text)  # parse now so a bad rule fails at load time


@dataclass(frozen=True)
class TagRules:
    rules: tuple[TagRule, ...]
    labels: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)
    source: str = "<rules>"

    @classmethod
    def from_yaml(cls, path: str | Path = TAGS_YAML) -> TagRules:
        path = Path(path)
        return cls.from_dict(
            yaml.safe_load(path.read_text(encoding="utf-8")) or {}, source=str(path)
        )

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<rules>") -> TagRules:
        labels = {
            family: {str(k): (str(v["zh"]), str(v["en"])) for k, v in values.items()}
            for family, values in (raw.get("labels") or {}).items()
        }
        rules = tuple(_rule(r, i, source) for i, r in enumerate(raw.get("rules") or []))
        ids = [r.id for r in rules]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"{source}: duplicate rule ids {dup}")
        return cls(rules, labels, source)

    def with_rules(self, *rules: TagRule | dict[str, Any]) -> TagRules:
        """These rules plus more (dicts in the YAML rule format)."""
        extra = tuple(
            r if isinstance(r, TagRule) else _rule(r, i, "<added>") for i, r in enumerate(rules)
        )
        return replace(self, rules=self.rules + extra)


def _rule(raw: dict[str, Any], index: int, source: str) -> TagRule:
    where = f"{source}: rules[{index}]"
    missing = [k for k in ("id", "name", "when", "confidence") if k not in raw]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    unknown = sorted(
        set(raw) - {"id", "name", "when", "confidence", "over", "for_each", "description"}
    )
    if unknown:
        raise ValueError(f"{where} ({raw['id']}): unknown keys {unknown}")
    name = raw["name"]
    if not isinstance(name, dict) or not {"zh", "en"} <= set(name):
        raise ValueError(f"{where} ({raw['id']}): name needs zh and en")
    try:
        return TagRule(
            id=str(raw["id"]),
            name_zh=str(name["zh"]),
            name_en=str(name["en"]),
            when=str(raw["when"]),
            confidence=str(raw["confidence"]),
            over=str(raw.get("over", "users")),
            for_each=raw.get("for_each"),
            description=str(raw.get("description", "")),
        )
    except (ValueError, ExpressionError) as err:
        raise ValueError(f"{where}: {err}") from None


def expand(rules: TagRules, profiles: Profiles) -> list[tuple[TagRule, str | None]]:
    """Concrete rules: each ``for_each`` rule once per value, with its texts substituted."""
    out: list[tuple[TagRule, str | None]] = []
    for rule in rules.rules:
        if rule.for_each is None:
            out.append((rule, None))
            continue
        family = rule.for_each
        for value in getattr(profiles, FAMILIES[family]):
            zh, en = rules.labels.get(family, {}).get(value, (value, value))
            subst = {family: value, f"{family}_zh": zh, f"{family}_en": en}
            texts = {
                k: _substitute(getattr(rule, k), subst)
                for k in ("id", "name_zh", "name_en", "when", "confidence", "description")
            }
            out.append((replace(rule, for_each=None, **texts), value))
    return out


def _substitute(text: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def assign_tags(profiles: Profiles, rules: TagRules | None = None) -> pd.DataFrame:
    """The tag table (``TAG_COLUMNS``): one row per (user, tag) whose rule holds."""
    rules = rules if rules is not None else TagRules.from_yaml()
    concrete = expand(rules, profiles)
    ids = [rule.id for rule, _ in concrete]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{rules.source}: rules expand to duplicate tag ids {dup}")
    frames = [_apply(profiles, rule, entity, rules.source) for rule, entity in concrete]
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_tags()
    tags = pd.concat(frames, ignore_index=True)
    return typed_tags(tags.sort_values(["user_id", "tag_id"], kind="stable", ignore_index=True))


def typed_tags(tags: pd.DataFrame) -> pd.DataFrame:
    """The tag table with its column order and dtypes (text columns as pandas strings)."""
    dtypes = {c: "str" for c in TAG_COLUMNS} | {"user_id": "int64", "confidence": "float64"}
    return tags[TAG_COLUMNS].astype(dtypes)


def empty_tags() -> pd.DataFrame:
    return typed_tags(pd.DataFrame({c: [] for c in TAG_COLUMNS}))


def _apply(profiles: Profiles, rule: TagRule, entity: str | None, source: str) -> pd.DataFrame:
    frame = profiles.users if rule.over == "users" else profiles.streamers
    hit, values, conf = _evaluate(rule, frame, source)
    rows = frame.iloc[hit]
    entity_col = np.full(len(hit), entity, dtype=object)
    if rule.over == "streamers":
        entity_col = rows["streamer_id"].astype(str).to_numpy(dtype=object)
    tag_id, name_en = _render(rule.id, rows), _render(rule.name_en, rows)
    return pd.DataFrame(
        {
            "user_id": rows["user_id"].to_numpy(dtype=np.int64),
            "tag_id": tag_id,
            "rule_id": _PLACEHOLDER.sub("*", rule.id),
            "name_zh": _render(rule.name_zh, rows),
            "name_en": name_en,
            "confidence": conf,
            "entity": entity_col,
            "provenance": _provenance(rule, name_en + " [" + tag_id + "]: ", values, conf),
        }
    )


def _evaluate(rule: TagRule, frame: pd.DataFrame, source: str):
    """(rows where the condition holds, their feature values, their confidence in [0, 1])."""
    when, confidence = Expression(rule.when), Expression(rule.confidence)
    names = dict.fromkeys(when.names + confidence.names)
    unknown = [n for n in names if n not in frame.columns]
    if unknown:
        raise ValueError(
            f"{source}: rule {rule.id!r} reads unknown features {unknown} of profile {rule.over}"
        )
    columns = {n: frame[n].to_numpy(dtype=np.float64) for n in names}
    hit = np.flatnonzero(when.evaluate(columns, len(frame)))
    values = {n: v[hit] for n, v in columns.items()}
    raw = confidence.evaluate(values, len(hit)).astype(np.float64)
    return hit, values, np.clip(np.nan_to_num(raw), 0.0, 1.0)


def _render(template: str, rows: pd.DataFrame) -> np.ndarray:
    """The template per row, ``{column}`` replaced by the row's value of that column."""
    parts = _PLACEHOLDER.split(template)  # literal, name, literal, name, ...
    out = pd.Series(parts[0], index=rows.index, dtype=object)
    for i in range(1, len(parts), 2):
        out = out + _text(rows[parts[i]].to_numpy()) + parts[i + 1]
    return out.to_numpy(dtype=object)


def _text(values: np.ndarray) -> np.ndarray:
    if np.issubdtype(values.dtype, np.floating):
        return np.char.mod("%.4g", values).astype(object)
    return values.astype(str).astype(object)


def _provenance(
    rule: TagRule, head: np.ndarray, values: dict[str, np.ndarray], conf: np.ndarray
) -> np.ndarray:
    """'<name> [<tag id>]: <condition> holds with a=1.2, b=3; confidence = <formula> = 0.87'."""
    text = head + f"{rule.when} holds with "
    for i, (name, v) in enumerate(values.items()):
        text = text + ("" if i == 0 else ", ") + f"{name}=" + _text(v)
    return text + f"; confidence = {rule.confidence} = " + np.char.mod("%.3f", conf).astype(object)
