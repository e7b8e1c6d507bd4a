"""Deterministic assignment of units to arms: salted hashing, layers, holdout, exposure logs.

One pure function, ``assign(units, salt, weights, traffic)``, decides every unit's arm; the
service, the market simulator and the analysis all call it (through ``Experiment.assign`` or
``Design.assign``), so they cannot disagree. It needs no state and no table of assignments:

- ``bucket(units, salt, purpose)`` maps int64 unit ids to floats in [0, 1): the salt and purpose
  are hashed once with BLAKE2b into two 64-bit keys, then each unit id goes through two rounds
  of the SplitMix64 finaliser (Steele, Lea & Flood 2014), vectorised in numpy. Each round is a
  bijection of 64-bit words, so distinct units never collide within a salt, and different salts
  or purposes give independent-looking buckets.
- An ``Experiment``'s *traffic* bucket (purpose "traffic") and its *arm* bucket (purpose "arm")
  are independent: a unit is in the experiment when its traffic bucket is below the traffic
  share, and its arm is where its arm bucket falls in the cumulative weights. Ramping traffic up
  therefore only adds units; none already in the experiment changes arm. (Changing the *weights*
  does move units; start a new salt for that.)
- A ``Layer`` splits its own bucket (purpose "layer") into consecutive slices, one per
  experiment (``shares``): a unit falls in at most one experiment of a layer (mutually
  exclusive), while different layers, hashed with different salts, are orthogonal. An
  experiment appended to a layer takes the unused remainder of [0, 1), so the slices of the
  experiments already running do not move.
- A ``Design`` is the set of layers plus a global holdout: units whose holdout bucket is below
  ``holdout`` take part in no experiment of their unit kind.

Units are viewers (``user_id``) or live rooms (``streamer_id``, for interventions inside a
room); each experiment says which (``unit``), and ``Design.assign`` takes the ids of one kind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

UnitKind = Literal["viewer", "room"]
UNIT_KINDS = ("viewer", "room")
WEIGHT_TOLERANCE = 1e-9
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _keys(salt: str, purpose: str) -> tuple[np.uint64, np.uint64]:
    """Two 64-bit keys from a keyed BLAKE2b digest of the salt and the purpose."""
    digest = hashlib.blake2b(f"{salt}\x1f{purpose}".encode(), digest_size=16).digest()
    return np.uint64(int.from_bytes(digest[:8], "little")), np.uint64(
        int.from_bytes(digest[8:], "little")
    )


def _mix64(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser: a bijection of uint64 words with good avalanche."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _as_units(units: np.ndarray | list[int]) -> np.ndarray:
    """Unit ids as an int64 array; anything but integers is refused."""
    arr = np.asarray(units)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"unit ids must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False).ravel()


def bucket(units: np.ndarray | list[int], salt: str, purpose: str) -> np.ndarray:
    """Each unit's uniform bucket in [0, 1) for ``(salt, purpose)``: a pure, vectorised hash."""
    k0, k1 = _keys(salt, purpose)
    words = _as_units(units).view(np.uint64)
    hashed = _mix64(_mix64(words + k0) ^ k1)
    return (hashed >> np.uint64(11)).astype(np.float64) * 2.0**-53


def check_weights(name: str, weights: Mapping[str, float]) -> None:
    """Refuse arm weights that are not positive or do not sum to 1, naming each weight."""
    listed = ", ".join(f"{arm}={w:g}" for arm, w in weights.items())
    if len(weights) < 2:
        raise ValueError(f"experiment {name!r}: needs at least two arms, got {listed or 'none'}")
    values = np.array(list(weights.values()), dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"experiment {name!r}: arm weights must be positive ({listed})")
    if abs(values.sum() - 1.0) > WEIGHT_TOLERANCE:
        raise ValueError(
            f"experiment {name!r}: arm weights sum to {values.sum():.6g} ({listed}); "
            "they must sum to 1"
        )


def assign(
    units: np.ndarray | list[int],
    salt: str,
    weights: np.ndarray | list[float],
    traffic: float = 1.0,
) -> np.ndarray:
    """Each unit's arm index (int64), -1 for units outside the ``traffic`` share.

    The traffic bucket and the arm bucket are independent hashes of ``(salt, unit)``, so raising
    ``traffic`` only adds units and never moves one already assigned."""
    cumulative = np.cumsum(np.asarray(weights, dtype=float))
    cumulative[-1] = 1.0  # rounding must not leave a sliver of units without an arm
    arms = np.searchsorted(cumulative, bucket(units, salt, "arm"), side="right")
    inside = bucket(units, salt, "traffic") < traffic
    return np.where(inside, arms, -1).astype(np.int64)


@dataclass(frozen=True)
class Experiment:
    """An experiment: its arms with their weights (summing to 1), its salt, the kind of unit it
    randomises and the share of that unit's traffic it takes (ramp-up: raise it over time).

    ``arms`` may be given as a mapping ``{"control": 0.5, "treatment": 0.5}``; it is stored as a
    tuple of (name, weight) pairs. The salt defaults to the name."""

    name: str
    arms: tuple[tuple[str, float], ...] | Mapping[str, float]
    salt: str = ""
    unit: UnitKind = "viewer"
    traffic: float = 1.0

    def __post_init__(self) -> None:
        arms = dict(self.arms) if isinstance(self.arms, Mapping) else dict(tuple(self.arms))
        if len(arms) != len(self.arms):
            raise ValueError(f"experiment {self.name!r}: arm names must be unique")
        check_weights(self.name, arms)
        if self.unit not in UNIT_KINDS:
            raise ValueError(f"experiment {self.name!r}: unit must be one of {UNIT_KINDS}")
        if not 0.0 <= self.traffic <= 1.0:
            raise ValueError(f"experiment {self.name!r}: traffic {self.traffic} not in [0, 1]")
        object.__setattr__(self, "arms", tuple((str(a), float(w)) for a, w in arms.items()))
        object.__setattr__(self, "salt", self.salt or self.name)

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.arms)

    @property
    def weights(self) -> np.ndarray:
        return np.array([w for _, w in self.arms])

    def assign(self, units: np.ndarray | list[int]) -> np.ndarray:
        """Arm index per unit, -1 outside the experiment's traffic (layers ignored)."""
        return assign(units, self.salt, self.weights, self.traffic)


@dataclass(frozen=True)
class Layer:
    """Mutually exclusive experiments: experiment ``i`` owns the slice ``shares[i]`` of the
    layer's bucket, in order (equal slices when ``shares`` is None). Shares may sum to less than
    1; experiments appended later take the rest without moving the running ones."""

    name: str
    experiments: tuple[Experiment, ...]
    shares: tuple[float, ...] | None = None
    salt: str = ""

    def __post_init__(self) -> None:
        exps = tuple(self.experiments)
        shares = self.shares or tuple(1.0 / len(exps) for _ in exps)
        if len(shares) != len(exps) or any(s < 0 for s in shares):
            raise ValueError(f"layer {self.name!r}: one non-negative share per experiment")
        if sum(shares) > 1.0 + WEIGHT_TOLERANCE:
            raise ValueError(f"layer {self.name!r}: shares sum to {sum(shares):g} > 1")
        if len({e.unit for e in exps}) > 1:
            raise ValueError(f"layer {self.name!r}: its experiments must share one unit kind")
        object.__setattr__(self, "experiments", exps)
        object.__setattr__(self, "shares", tuple(float(s) for s in shares))
        object.__setattr__(self, "salt", self.salt or self.name)

    def assign(self, units: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(experiment index, arm index) per unit; -1 where the unit is in none."""
        units = _as_units(units)
        edges = np.cumsum((0.0, *self.shares))
        slot = np.searchsorted(edges, bucket(units, self.salt, "layer"), side="right") - 1
        experiment = np.full(len(units), -1, dtype=np.int64)
        arm = np.full(len(units), -1, dtype=np.int64)
        for i, exp in enumerate(self.experiments):
            mine = np.flatnonzero(slot == i)
            arms = exp.assign(units[mine])
            experiment[mine[arms >= 0]], arm[mine] = i, arms
        return experiment, arm


@dataclass(frozen=True)
class Design:
    """Every running experiment: orthogonal layers and a global holdout per unit kind."""

    layers: tuple[Layer, ...] = field(default_factory=tuple)
    holdout: float = 0.0
    holdout_salt: str = "global-holdout"

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        names = [e.name for layer in layers for e in layer.experiments]
        if len(set(names)) != len(names):
            raise ValueError(f"design: experiment names must be unique, got {names}")
        if len({layer.salt for layer in layers}) != len(layers):
            raise ValueError("design: layer salts must be unique (else layers are not orthogonal)")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"design: holdout {self.holdout} not in [0, 1)")
        object.__setattr__(self, "layers", layers)

    @classmethod
    def of(cls, *experiments: Experiment, holdout: float = 0.0) -> Design:
        """Each experiment in a layer of its own (all orthogonal)."""
        return cls(tuple(Layer(e.name, (e,)) for e in experiments), holdout)

    def in_holdout(self, units: np.ndarray | list[int], unit: UnitKind = "viewer") -> np.ndarray:
        """Whether each unit is in the global holdout of its kind."""
        return bucket(units, self.holdout_salt, f"holdout:{unit}") < self.holdout

    def assign(self, units: np.ndarray | list[int], unit: UnitKind = "viewer") -> pd.DataFrame:
        """One row per (unit, experiment) the unit is in: ``unit``, ``layer``, ``experiment``,
        ``arm`` (the arm's name), for the experiments randomising ``unit``."""
        units = _as_units(units)
        units = units[~self.in_holdout(units, unit)]
        parts = []
        for layer in self.layers:
            if not layer.experiments or layer.experiments[0].unit != unit:
                continue
            exp_index, arm_index = layer.assign(units)
            for i, exp in enumerate(layer.experiments):
                rows = exp_index == i
                names = np.array(exp.arm_names, dtype=object)[arm_index[rows]]
                parts.append(
                    pd.DataFrame(
                        {
                            "unit": units[rows],
                            "layer": layer.name,
                            "experiment": exp.name,
                            "arm": names,
                        }
                    )
                )
        columns = {"unit": "int64", "layer": object, "experiment": object, "arm": object}
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    def exposures(
        self,
        units: np.ndarray | list[int],
        ts: np.ndarray | list[int],
        unit: UnitKind = "viewer",
        first_only: bool = True,
    ) -> pd.DataFrame:
        """The exposure log of events (a unit seen at ``ts``): ``unit``, ``experiment``, ``arm``,
        ``ts`` for every experiment each unit is in; with ``first_only`` one row per (unit,
        experiment), at its first exposure."""
        units, ts = _as_units(units), np.asarray(ts, dtype=np.int64).ravel()
        if len(units) != len(ts):
            raise ValueError(f"exposures: {len(units)} units but {len(ts)} timestamps")
        seen = pd.DataFrame({"unit": units, "ts": ts})
        assigned = self.assign(np.unique(units), unit)[["unit", "experiment", "arm"]]
        log = seen.merge(assigned, on="unit", how="inner")
        if first_only:
            log = log.sort_values("ts", kind="stable").drop_duplicates(["unit", "experiment"])
        log = log.sort_values(["ts", "unit", "experiment"], kind="stable")
        return log[["unit", "experiment", "arm", "ts"]].reset_index(drop=True)


def attach_arms(
    frame: pd.DataFrame, exposures: pd.DataFrame, experiment: str, unit: str = "user_id"
) -> pd.DataFrame:
    """``frame`` restricted to the units exposed to ``experiment``, with their ``arm``.

    Refuses an exposure log without that experiment, and a unit logged in two arms (the
    assignment changed mid-experiment); units never exposed are left out of the analysis."""
    log = exposures.loc[exposures["experiment"] == experiment, ["unit", "arm"]]
    if log.empty:
        raise ValueError(f"exposure log has no rows for experiment {experiment!r}")
    arms = log.drop_duplicates()
    if arms["unit"].duplicated().any():
        bad = arms.loc[arms["unit"].duplicated(), "unit"].iloc[:5].tolist()
        raise ValueError(f"experiment {experiment!r}: units logged in two arms, e.g. {bad}")
    if unit not in frame.columns:
        raise KeyError(f"attach_arms: frame has no unit column {unit!r}")
    arms = arms.rename(columns={"unit": unit})
    return frame.drop(columns=["arm"], errors="ignore").merge(arms, on=unit, how="inner")
