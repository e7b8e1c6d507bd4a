"""The shared training stack: train(cfg) runs, checkpoints, exact resume, the CLIs, configs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from recsys.cli import evaluate as evaluate_cli
from recsys.recommenders import train
from recsys.recommenders.data import DataConfig
from recsys.recommenders.registry import model_settings
from recsys.training.checkpoint import BEST, CHECKPOINT, load_checkpoint
from recsys.training.trainer import TrainerConfig

CONF = Path(__file__).resolve().parents[1] / "recsys" / "conf"
DATA_CONFIGS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
MODEL_CONFIGS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
TRAINER_CONFIGS = sorted(p.stem for p in (CONF / "trainer").glob("*.yaml"))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world_cache(tmp_path_factory) -> Path:
    from recsys.datasets import ensure_world

    cache = tmp_path_factory.mktemp("worlds")
    ensure_world("tiny", 0, cache)
    return cache


def _tiny_overrides(
    run_dir: Path, cache: Path, epochs: int = 1, model: str = "sasrec"
) -> list[str]:
    window = "model.bag_size=20" if model.startswith("two_tower") else "model.maxlen=20"
    return [
        "data=synthetic-tiny",
        f"data.cache_dir={cache}",
        f"run_dir={run_dir}",
        f"model={model}",
        "model.dim=16",
        window,
        f"trainer.max_epochs={epochs}",
        "trainer.batch_size=32",
        "trainer.num_threads=1",
        "trainer.progress=false",
        "trainer.val_max_users=200",
    ]


def _compose(name: str, overrides: list[str]):
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        return compose(config_name=name, overrides=overrides)


def _metrics_only(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith(("valid/", "test/", "train/best"))}


@pytest.mark.parametrize("data", DATA_CONFIGS)
@pytest.mark.parametrize("model", MODEL_CONFIGS)
@pytest.mark.parametrize("trainer", TRAINER_CONFIGS)
def test_every_shipped_train_config_instantiates(data, model, trainer, tmp_path):
    (tmp_path / "events").mkdir()  # what data=world checks its path holds
    (tmp_path / "ratings.txt").write_text("1 2\n")
    path = {"world": [f"data.path={tmp_path}"],
            "interactions": [f"data.path={tmp_path / 'ratings.txt'}"]}.get(data, [])  # fmt: skip
    cfg = _compose(
        "train",
        [f"data={data}", f"model={model}", f"trainer={trainer}", f"run_dir={tmp_path}", *path],
    )
    settings = model_settings(cfg)
    assert settings["name"] == cfg.model.name and settings["model"].dim > 0
    assert isinstance(settings["side_features"], tuple)
    assert DataConfig(**cfg.data).name == data
    assert TrainerConfig(**cfg.trainer).device == "cpu"


def test_evaluate_config_composes(tmp_path):
    cfg = _compose("evaluate", [f"checkpoint={tmp_path / BEST}"])
    assert cfg.stage == "test" and cfg.protocol is None


@pytest.mark.parametrize("model", MODEL_CONFIGS)
def test_train_one_epoch_on_the_tiny_world(model, tmp_path, world_cache):
    run_dir = tmp_path / "run"
    started = time.perf_counter()
    metrics = train(_compose("train", _tiny_overrides(run_dir, world_cache, model=model)))
    assert time.perf_counter() - started < 60
    for head in ("product", "streamer"):
        for protocol in ("live", "full"):
            assert 0.0 <= metrics[f"test/{head}/{protocol}/ndcg@10"] <= 1.0
    assert metrics["train/epochs"] == 1
    for name in (CHECKPOINT, BEST, "metrics.json"):
        assert (run_dir / name).is_file()
    ckpt = load_checkpoint(run_dir / CHECKPOINT)
    assert ckpt["train_state"]["epoch"] == 1 and ckpt["train_state"]["step"] == 0
    assert {"model", "optimizer", "scheduler", "rng", "config", "vocabularies"} <= set(ckpt)
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    assert {"train/loss", "val/ndcg@10", "val/product/ndcg@10"} <= set(events.Tags()["scalars"])
    assert (run_dir / "tensorboard" / "projector_config.pbtxt").is_file()


def test_evaluate_cli_reproduces_the_training_metrics(tmp_path, world_cache):
    run_dir = tmp_path / "run"
    metrics = train(_compose("train", _tiny_overrides(run_dir, world_cache)))
    cfg = _compose(
        "evaluate",
        [
            f"checkpoint={run_dir}",
            "protocol=live",
            f"cache_dir={world_cache}",
            f"out_file={tmp_path / 'eval.json'}",
        ],
    )
    got = evaluate_cli.run(cfg)
    for key in ("test/product/live/ndcg@10", "test/streamer/live/hr@10"):
        assert got[key] == pytest.approx(metrics[key], abs=1e-12)
    assert (tmp_path / "eval.json").is_file()


def test_resume_rejects_a_changed_config(tmp_path, world_cache):
    run_dir = tmp_path / "run"
    train(_compose("train", _tiny_overrides(run_dir, world_cache)))
    changed = _tiny_overrides(run_dir, world_cache, epochs=2) + ["model.dropout=0.5", "resume=true"]
    with pytest.raises(ValueError, match="different model"):
        train(_compose("train", changed))


def _wait_for_mid_epoch_checkpoint(proc, path: Path, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended before it could be killed:\n{proc.stderr.read()}")
        if path.is_file():
            state = load_checkpoint(path)["train_state"]
            if state["epoch"] >= 1 and state["step"] > 0:
                return state
        time.sleep(0.005)
    raise AssertionError("no mid-epoch checkpoint appeared")


def test_a_run_killed_mid_epoch_resumes_to_identical_metrics(tmp_path, world_cache):
    extra = ["trainer.checkpoint_every_steps=2", "trainer.batch_size=8"]
    whole = train(_compose("train", _tiny_overrides(tmp_path / "whole", world_cache, 4) + extra))

    killed_dir = tmp_path / "killed"
    args = _tiny_overrides(killed_dir, world_cache, 4) + extra + [f"hydra.run.dir={killed_dir}"]
    exe = Path(sys.executable).with_name("recsys-train")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [str(exe), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        state = _wait_for_mid_epoch_checkpoint(proc, killed_dir / CHECKPOINT)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (killed_dir / "metrics.json").exists()
    assert state["epoch"] < 4

    resumed = train(_compose("train", args[:-1] + ["resume=true"]))
    assert _metrics_only(resumed) == _metrics_only(whole)
    final = load_checkpoint(killed_dir / CHECKPOINT)["model"]
    reference = load_checkpoint(tmp_path / "whole" / CHECKPOINT)["model"]
    assert all(torch.equal(final[k], reference[k]) for k in reference)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model", ["sasrec", "two_tower"])
def test_training_runs_on_cuda(tmp_path, world_cache, model):
    overrides = _tiny_overrides(tmp_path / "run", world_cache, model=model)
    overrides.append("trainer.device=cuda")
    metrics = train(_compose("train", overrides))
    assert np.isfinite(metrics["test/product/live/ndcg@10"])
    ckpt = load_checkpoint(tmp_path / "run" / BEST)
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())  # loaded to CPU


def test_model_settings_route_each_family_and_refuse_unknown_keys():
    two = model_settings(
        {"model": {"name": "two_tower", "dim": 8}, "task": {"heads": ["product"]}, "loss": {}}
    )
    assert two["model"].dim == 8 and two["heads"] == ("product",) and two["loss"].logq
    seq = model_settings({"model": {"name": "sasrec", "maxlen": 7}, "task": {"windows": "all"}})
    assert seq["model"].maxlen == 7 and seq["windows"] == "all"
    with pytest.raises(ValueError, match=r"unknown keys \['maxlen'\]"):
        model_settings({"model": {"name": "two_tower", "maxlen": 7}})
    with pytest.raises(ValueError, match=r"task config \(sasrec\): unknown keys \['windowz'\]"):
        model_settings({"model": {"name": "sasrec"}, "task": {"windowz": "all"}})
    with pytest.raises(KeyError, match="unknown model 'gru4rec'"):
        model_settings({"model": {"name": "gru4rec"}})


def test_every_loss_and_task_config_follows_a_model_config():
    """``loss`` and ``task`` default to the chosen model's name, so the train-config test above
    composes every one of them exactly when each has a model config of the same name."""
    for group in ("loss", "task"):
        assert sorted(p.stem for p in (CONF / group).glob("*.yaml")) == MODEL_CONFIGS, group
