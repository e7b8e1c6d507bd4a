"""A trained ranker as one file, ``ranker.pt``, that a service loads without the training run.

The file is ``torch.save`` of plain values only (dicts, lists, strings, numbers and tensors),
so it loads with ``torch.load(weights_only=True)``:

* ``mode``, ``k``, ``objective``, ``format`` and the caller's ``meta`` (where it was trained,
  on what, how well);
* learned mode: the ESMM's config, its ``state_dict`` (the standardisation mean and scale are
  buffers in it) and ``model_features``, the candidate features it reads, in order;
* blend mode: the (feature, weight) pairs.

Reason rules are not saved: they are display settings, read from ``conf/ranker/reasons.yaml``
(or passed in) when the ranker is loaded.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch

from recsys.models.esmm import ESMM, ESMMConfig
from recsys.ranking.ranker import BlendWeights, Ranker
from recsys.ranking.reasons import ReasonRules

FILE_NAME = "ranker.pt"
FORMAT = 1
PLAIN = (str, int, float, bool, type(None))


def ranker_file(path: str | Path) -> Path:
    """``path`` itself, or ``<path>/ranker.pt`` when ``path`` is a folder."""
    path = Path(path)
    return path / FILE_NAME if path.is_dir() else path


def _check_plain(value, where: str) -> None:
    """Raise unless ``value`` is built of dicts (string keys), lists/tuples and plain scalars,
    so the file stays loadable with ``weights_only=True``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"save_ranker: meta key {key!r} at {where} is not a string")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, PLAIN):
        raise TypeError(
            f"save_ranker: meta value at {where} has type {type(value).__name__}; use plain "
            "str / int / float / bool / None, lists and dicts"
        )


def _model_state(ranker: Ranker) -> dict:
    if ranker.mode == "blend":
        return {"blend": [[name, float(w)] for name, w in ranker.blend.weights]}
    model = ranker.model
    return {
        "esmm_config": asdict(model.config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "model_features": list(ranker.model_features),
    }


def save_ranker(ranker: Ranker, path: str | Path, meta: dict | None = None) -> Path:
    """Write ``ranker`` (and ``meta``, plain values) to ``path`` (a file, or a folder that gets
    ``ranker.pt``); returns the file written."""
    meta = dict(meta or {})
    _check_plain(meta, "meta")
    path = ranker_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "mode": ranker.mode,
        "k": int(ranker.k),
        "objective": ranker.objective,
        "meta": meta,
        **_model_state(ranker),
    }
    torch.save(state, path)
    return path


def _esmm(state: dict, path: Path) -> ESMM:
    raw = dict(state["esmm_config"])
    raw["categorical"] = tuple(tuple(pair) for pair in raw.get("categorical", ()))
    model = ESMM(ESMMConfig(**raw))
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path}: the saved ESMM weights do not fit its config: {err}") from err
    return model.eval()


def _blend(pairs: list, path: Path) -> BlendWeights:
    weights = tuple((str(name), float(w)) for name, w in pairs)
    bad = [name for name, w in weights if not math.isfinite(w)]
    if not weights or bad:
        raise ValueError(f"{path}: blend weights are empty or not finite ({bad})")
    return BlendWeights(weights)


def load_ranker(path: str | Path, *, reasons: ReasonRules | None = None) -> tuple[Ranker, dict]:
    """The ranker saved by ``save_ranker`` at ``path`` (file or folder; learned models in eval
    mode on CPU) and its ``meta``. ``reasons``: the rules to attach (default: the shipped
    ``conf/ranker/reasons.yaml``)."""
    path = ranker_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved ranker at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: not a ranker file of format {FORMAT} (found {found!r})")
    common = {"k": int(state["k"]), "objective": str(state["objective"]), "reasons": reasons}
    if state["mode"] == "blend":
        ranker = Ranker.blended(_blend(state["blend"], path), **common)
    elif state["mode"] == "learned":
        features = tuple(str(n) for n in state["model_features"])
        ranker = Ranker.learned(_esmm(state, path), features, **common)
    else:
        raise ValueError(f"{path}: unknown ranker mode {state['mode']!r}")
    return ranker, dict(state.get("meta") or {})
