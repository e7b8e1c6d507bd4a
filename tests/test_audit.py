"""recsys-audit (recsys.erasure.audit) finds ids wherever they hide, and the pieces of erasure
that act on single objects: pickled states, JSON, projector samples, checkpoints."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.cli.audit import read_raw_ids
from recsys.erasure.artifacts import Forgotten, erase, kind_of
from recsys.erasure.audit import audit
from recsys.erasure.checkpoints import forget_in_checkpoint
from recsys.erasure.membership import advantage
from recsys.erasure.walk import scrub
from recsys.privacy.tombstones import Tombstones

GONE = 4_611_686_018_427_387_913  # a 63-bit pseudonym
KEPT = 3_074_457_345_618_258_611


@dataclass(frozen=True)
class _Features:
    user_id: np.ndarray
    x: np.ndarray
    names: tuple[str, ...]


def test_the_audit_finds_ids_in_every_kind_of_file(tmp_path):
    pd.DataFrame({"user_id": [KEPT, GONE], "v": [1, 2]}).to_parquet(tmp_path / "t.parquet")
    pd.DataFrame({"note": [f"viewer {GONE} said hi"]}).to_parquet(tmp_path / "s.parquet")
    (tmp_path / "r.json").write_text(json.dumps({"top": [{"user_id": GONE}]}))
    np.save(tmp_path / "ids.npy", np.array([KEPT, GONE]))
    (tmp_path / "state.pkl").write_bytes(pickle.dumps({"a": np.array([7, GONE, 9])}))
    torch.save({"vocabularies": {"user": np.array([KEPT, GONE])}}, tmp_path / "m.pt")
    Tombstones([GONE]).write(tmp_path)
    report = audit([tmp_path], pii=False)
    found = {h.path.split("/")[-1] for h in report.hits}
    assert found == {"t.parquet", "s.parquet", "r.json", "ids.npy", "state.pkl", "m.pt"}
    assert "FOUND forgotten id" in report.summary()
    assert audit([tmp_path], ids=[], raw_ids=[KEPT], pii=False).occurrences["raw id"] > 0


def test_the_audit_finds_raw_ids_that_are_not_numbers(tmp_path):
    out, kept = tmp_path / "out", tmp_path / "kept"
    out.mkdir(), kept.mkdir()
    raw = ["dy_83749201", "u-8f3a", "id:77#x"]  # the last has characters outside a token
    pd.DataFrame({"user_id": ["dy_83749201", "dy_837492010"]}).to_parquet(out / "e.parquet")
    (out / "r.json").write_text(json.dumps({"who": "u-8f3a", "also": "xu-8f3a"}))
    (out / "state.pkl").write_bytes(pickle.dumps({"owner": "id:77#x"}))
    (tmp_path / "ids.txt").write_text("\n".join(raw + ["", "12345"]) + "\n")
    (kept / "k.csv").write_text("user_id\n12345\n")
    raw_ids = read_raw_ids(tmp_path / "ids.txt")
    report = audit([out], raw_ids=raw_ids, pii=False)
    hits = {(h.path.split("/")[-1], h.count) for h in report.hits}
    # whole tokens only: dy_837492010 and xu-8f3a are other ids
    assert hits == {("e.parquet", 1), ("r.json", 1), ("state.pkl", 1)}
    assert report.raw_ids == 4
    assert audit([kept], raw_ids=raw_ids, pii=False).occurrences["raw id"] == 1


def test_the_audit_finds_pii_in_stored_text(tmp_path):
    pd.DataFrame({"comment": ["好看", "加我微信 abc12345 电话 138 0013 8000"]}).to_parquet(
        tmp_path / "events.parquet"
    )
    kinds = {h.what for h in audit([tmp_path]).hits}
    assert "pii:PHONE" in kinds and "pii:WECHAT" in kinds
    assert audit([tmp_path], pii=False).hits == []


def test_scrub_walks_frames_aligned_arrays_dicts_and_records():
    features = _Features(np.array([KEPT, GONE]), np.eye(2), ("a", "b"))
    state = {"consent": pd.DataFrame({"user_id": [GONE, KEPT]}), GONE: "wallet",
             "granted": {(GONE, 3), (KEPT, 4)}, "features": features,
             "rows": [{"user_id": GONE}, {"user_id": KEPT}, 5]}  # fmt: skip
    out, removed = scrub(state, np.array([GONE]))
    assert removed == 5 and GONE not in out and out["granted"] == {(KEPT, 4)}
    assert out["consent"]["user_id"].tolist() == [KEPT] and out["rows"][1:] == [5]
    assert out["features"].user_id.tolist() == [KEPT] and out["features"].x.shape == (1, 2)


def test_a_checkpoint_loses_the_rows_of_forgotten_users_and_their_moments():
    vocab = np.array([11, GONE, 33])
    weight = torch.arange(5 * 2, dtype=torch.float32).reshape(5, 2)  # padding, unknown, 3 users
    ck = {"model": {"tables.user.weight": weight.clone(), "other.weight": torch.ones(4, 2)},
          "optimizer": {"state": {0: {"exp_avg": weight.clone()},
                                  1: {"exp_avg": torch.ones(4, 2)}}},
          "vocabularies": {"user": vocab}, "model_config": {"n_users": 5}}  # fmt: skip
    assert forget_in_checkpoint(ck, np.array([GONE])) == 1
    kept = weight[[0, 1, 2, 4]]
    assert torch.equal(ck["model"]["tables.user.weight"], kept)
    assert torch.equal(ck["optimizer"]["state"][0]["exp_avg"], kept)
    assert ck["vocabularies"]["user"].tolist() == [11, 33] and ck["model_config"]["n_users"] == 4
    assert forget_in_checkpoint(ck, np.array([GONE])) == 0
    ck["model"]["user_bias"] = torch.zeros(4)  # a second per-user tensor of its rows
    ck["optimizer"]["state"][2] = {"exp_avg": torch.zeros(4, 2)}
    ck["vocabularies"]["user"] = np.array([11, 33])
    with pytest.raises(ValueError, match="cannot tell its rows apart"):
        forget_in_checkpoint(ck, np.array([33]))


def test_projector_rows_go_with_their_vectors(tmp_path):
    folder = tmp_path / "00000" / "user"
    folder.mkdir(parents=True)
    (folder / "metadata.tsv").write_text(f"id\tname\n{KEPT}\ta\n{GONE}\tb\n")
    (folder / "tensors.tsv").write_text("0.1\t0.2\n0.3\t0.4\n")
    path = folder / "metadata.tsv"
    assert kind_of(path) == "projector"
    assert erase("projector", path, Forgotten(np.array([GONE])), str(tmp_path)) == 1
    assert (folder / "metadata.tsv").read_text() == f"id\tname\n{KEPT}\ta\n"
    assert (folder / "tensors.tsv").read_text() == "0.1\t0.2\n"


def test_rows_named_by_a_forgotten_users_keys_go_too(tmp_path):
    from recsys.erasure.artifacts import collect_links

    pd.DataFrame({"user_id": [GONE, KEPT, GONE], "request_id": [1, 2, -1]}).to_parquet(
        tmp_path / "requests.parquet"
    )
    pd.DataFrame({"request_id": [1, 2, -1], "p": [0.1, 0.2, 0.3]}).to_parquet(
        tmp_path / "x.parquet"
    )
    gone = Forgotten(np.array([GONE]))
    collect_links(tmp_path / "requests.parquet", gone, "s")
    assert erase("table", tmp_path / "x.parquet", gone, "s") == 1  # -1 names no row
    assert pd.read_parquet(tmp_path / "x.parquet")["request_id"].tolist() == [2, -1]


def test_advantage_is_zero_for_the_same_scores_and_one_when_apart():
    same = np.linspace(0, 1, 50)
    assert advantage(same, same)[0] == pytest.approx(0.0, abs=0.03)
    adv, auc = advantage(same + 2.0, same)
    assert adv == 1.0 and auc == 1.0


def test_the_forget_and_audit_commands_clean_a_folder_and_say_so(tmp_path, capsys):
    from recsys.cli import audit as audit_cli
    from recsys.cli import forget as forget_cli
    from tests.conftest import compose_config

    world = tmp_path / "w"
    world.mkdir()
    pd.DataFrame({"user_id": [KEPT, GONE], "v": [1, 2]}).to_parquet(world / "users.parquet")
    (tmp_path / "gone.txt").write_text(f"{GONE}\n")
    ids = f"ids={tmp_path / 'gone.txt'}"
    found = audit_cli.run(compose_config("audit", [f"roots=[{world}]", ids,
                                                   f"out_dir={tmp_path / 'a0'}"]))  # fmt: skip
    assert found["found"] == {"forgotten id": 1}
    report = forget_cli.run(compose_config("forget", [f"users={tmp_path / 'gone.txt'}",
                                                      f"roots=[{world}]", "progress=false",
                                                      f"out_dir={tmp_path / 'f'}"]))  # fmt: skip
    assert report.removed["table"] == 1 and (tmp_path / "f" / "forget.json").is_file()
    clean = audit_cli.run(
        compose_config("audit", [f"roots=[{world}]", f"out_dir={tmp_path / 'a1'}"])
    )
    assert clean["found"] == {} and "nothing found" in capsys.readouterr().out
    with pytest.raises(ValueError, match="row 0: user id 'abc' is not an integer"):
        (tmp_path / "bad.txt").write_text("abc\n")
        forget_cli.read_users(tmp_path / "bad.txt")
