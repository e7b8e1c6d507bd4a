"""The sequential model family: tokens, windows, the causal transformer, losses, the adapter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recsys.data.interactions import Interactions, UserSequences
from recsys.data.splits import live_time_split
from recsys.data.vocab import Vocab
from recsys.evaluation import evaluate
from recsys.inputs.live_candidates import LiveCandidates
from recsys.inputs.targets import future_of_kind, next_of_kind, next_visit
from recsys.inputs.tokens import ACTION_CODE, PRODUCT, ROOM, TokenLog, world_context
from recsys.inputs.windows import WindowDataset, last_tokens, scoring_batch, training_windows
from recsys.models.embeddings import EntityTables
from recsys.models.repeat_bonus import RepeatScores
from recsys.models.sequential import SequentialConfig, SequentialModel
from recsys.recommenders.sequential import SequentialRecommender, Validation, horizon
from recsys.tasks.sequential import (
    LossConfig,
    SequentialTask,
    bce_one_negative,
    full_ce,
    gbce,
    gbce_beta,
    sampled_softmax,
)
from recsys.training.trainer import TrainerConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _seqs(rows: list[list[int]], n_items: int) -> UserSequences:
    lengths = [len(r) for r in rows]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.array([i for r in rows for i in r], dtype=np.int64)
    return UserSequences(indptr, items, np.arange(len(items), dtype=np.int64), n_items)


# -- tokens and windows ---------------------------------------------------------------------


def test_gap_buckets_are_log2_seconds_and_restart_per_user():
    log = TokenLog.from_events(
        user=np.array([0, 0, 0, 1]),
        kind=np.full(4, PRODUCT),
        entity=np.array([2, 3, 4, 5]),
        action=np.full(4, ACTION_CODE["click"]),
        ts=np.array([100, 100, 107, 50]),
        n_users=2,
    )
    # user 0: first token, gap 0 -> 2 + 0, gap 7 -> 2 + floor(log2 8) = 5; user 1: first token.
    assert log.gap_buckets(24).tolist() == [1, 2, 5, 1]
    assert log.gap_buckets(4).tolist() == [1, 2, 3, 1]  # capped at n_buckets - 1
    assert TokenLog.from_sequences(_seqs([[2, 3]], 5)).gap_buckets(24).tolist() == [1, 1]


def test_last_tokens_left_pads_and_truncates():
    log = TokenLog.from_sequences(_seqs([[2, 3, 4, 5], [6], []], 8))
    got = last_tokens(log, np.array([0, 1, 2]), 3)["entity"]
    assert got.tolist() == [[3, 4, 5], [0, 0, 6], [0, 0, 0]]


def test_next_of_kind_finds_the_next_token_of_each_kind():
    p, r = PRODUCT, ROOM
    kind = np.array([[0, r, p, p, r, p]])
    entity = np.array([[0, 7, 2, 3, 8, 4]])
    assert next_of_kind(kind, entity, p).tolist() == [[0, 2, 3, 4, 4]]
    assert next_of_kind(kind, entity, r).tolist() == [[0, 8, 8, 8, 0]]


def test_future_of_kind_draws_a_later_token_of_the_kind():
    p, r = PRODUCT, ROOM
    kind = np.array([[0, r, p, p, r, p]])
    entity = np.array([[0, 7, 2, 3, 8, 4]])
    # Slot 1 (room 7) has products 2, 3, 4 later: u picks the first, second or third.
    for u, want in ((0.0, 2), (0.34, 3), (0.99, 4)):
        got = future_of_kind(kind, entity, p, np.full((1, 5), u))
        assert got[0, 1] == want
    assert future_of_kind(kind, entity, p, np.zeros((1, 5))).tolist() == [[0, 2, 3, 4, 4]]
    assert future_of_kind(kind, entity, r, np.full((1, 5), 0.99)).tolist() == [[0, 8, 8, 8, 0]]


def test_future_targets_are_drawn_per_step_and_repeat_per_seed():
    log = TokenLog.from_sequences(_seqs([[2, 3, 4, 5, 6, 7]] * 4, 9))
    data = WindowDataset(
        training_windows(log, maxlen=5, heads={"product": PRODUCT}), targets="future"
    )
    first = [b.targets["product"] for b in data.epoch(batch_size=2, seed=0, epoch=0)]
    again = [b.targets["product"] for b in data.epoch(batch_size=2, seed=0, epoch=0)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    later = torch.cat(first)
    inputs = torch.cat([b.entity for b in data.epoch(batch_size=2, seed=0, epoch=0)])
    assert bool(((later > inputs) | (later == 0)).all())  # always a later item
    assert len(torch.unique(later[:, 0])) > 1  # not always the next one


def test_training_windows_shift_targets_by_one():
    log = TokenLog.from_sequences(_seqs([[2, 3, 4], [5], [6, 7]], 9))
    w = training_windows(log, maxlen=3, heads={"product": PRODUCT})
    assert w.users.tolist() == [0, 2]  # user 1 has a single token: no target
    assert w.inputs["entity"].tolist() == [[0, 2, 3], [0, 0, 6]]
    assert w.targets["product"].tolist() == [[0, 3, 4], [0, 0, 7]]


def test_every_target_windows_cover_each_token_once():
    log = TokenLog.from_sequences(_seqs([[2, 3, 4, 5, 6, 7, 8], [9, 10]], 12))
    w = training_windows(log, maxlen=3, heads={"product": PRODUCT}, every_target=True)
    assert w.users.tolist() == [0, 0, 1]
    assert w.inputs["entity"].tolist() == [[5, 6, 7], [2, 3, 4], [0, 0, 9]]
    assert w.targets["product"].tolist() == [[6, 7, 8], [3, 4, 5], [0, 0, 10]]
    targets = np.sort(w.targets["product"][w.targets["product"] > 0])
    assert targets.tolist() == [3, 4, 5, 6, 7, 8, 10]


def test_bucketed_batches_group_similar_lengths_deterministically():
    rows = [[2] * n for n in (2, 9, 3, 8, 2, 9, 3, 8)]
    data = WindowDataset(
        training_windows(
            TokenLog.from_sequences(_seqs(rows, 4)), maxlen=10, heads={"product": PRODUCT}
        )
    )
    batches = [b.entity.shape for b in data.epoch(batch_size=2, seed=1, epoch=0, bucket_pool=4)]
    assert sorted(w for _, w in batches) == [1, 2, 7, 8]  # pairs of equal lengths
    again = [b.entity.shape for b in data.epoch(batch_size=2, seed=1, epoch=0, bucket_pool=4)]
    assert batches == again


def test_window_batches_follow_a_seeded_permutation_and_trim_padding():
    log = TokenLog.from_sequences(_seqs([[2, 3], [4, 5, 6], [7, 8], [2, 4]], 9))
    data = WindowDataset(training_windows(log, maxlen=5, heads={"product": PRODUCT}))
    first = [b.entity.tolist() for b in data.epoch(batch_size=2, seed=3, epoch=0)]
    again = [b.entity.tolist() for b in data.epoch(batch_size=2, seed=3, epoch=0)]
    other = [b.entity.tolist() for b in data.epoch(batch_size=2, seed=3, epoch=1)]
    assert first == again and first != other
    assert max(len(b[0]) for b in first) == 2  # 3 events -> 2 inputs; never the 5 slots
    skipped = [b.entity.tolist() for b in data.epoch(batch_size=2, seed=3, epoch=0, start_step=1)]
    assert skipped == first[1:]


# -- embeddings and model -------------------------------------------------------------------


def test_entity_tables_look_up_rows_and_zero_padding():
    tables = EntityTables(sizes={"product": 6, "streamer": 4}, dim=3)
    ids = torch.tensor([[0, 2, 5]])
    out = tables({"product": ids})
    assert out["product"].shape == (1, 3, 3)
    assert torch.equal(out["product"][0, 0], torch.zeros(3))
    assert torch.equal(out["product"][0, 2], tables.weight("product")[5].detach())
    with pytest.raises(KeyError, match="user"):
        tables({"user": ids})


def test_entity_tables_read_without_gradients_match_the_jagged_lookup():
    tables = EntityTables(sizes={"product": 6, "streamer": 4, "user": 3}, dim=5)
    ids = {
        "product": torch.tensor([[0, 2, 5], [3, 3, 0]]),
        "streamer": torch.tensor([[1, 0, 3, 2], [0, 0, 0, 2]]),
        "user": torch.tensor([[1], [2]]),
    }
    jagged = tables(ids)  # gradients on: through the torchrec collection
    with torch.no_grad():
        direct = tables(ids)
    for name in ids:
        assert torch.equal(direct[name], jagged[name].detach())


def test_models_share_tables_by_name():
    config = SequentialConfig(n_products=10, n_streamers=5, dim=8, maxlen=4)
    a = SequentialModel(config)
    b = SequentialModel(config, tables=a.tables)
    assert b.head_weight("product") is a.head_weight("product")
    with pytest.raises(ValueError, match="rows"):
        SequentialModel(SequentialConfig(n_products=11, dim=8), tables=a.tables)


def _model(**kw) -> SequentialModel:
    torch.manual_seed(0)
    config = SequentialConfig(n_products=20, n_streamers=6, dim=8, maxlen=6, n_heads=2, **kw)
    return SequentialModel(config, side_features={"product": {"category": np.arange(20) % 3}})


def _batch(entity, kind=None):
    entity = torch.tensor(entity)
    kind = torch.where(entity > 0, PRODUCT, 0) if kind is None else torch.tensor(kind)
    from recsys.inputs.windows import SequenceBatch

    return SequenceBatch(kind, entity, (kind > 0).long() * 3, (kind > 0).long())


def test_output_at_a_slot_ignores_later_tokens():
    model = _model(dropout=0.0).eval()
    a = model(_batch([[0, 2, 5, 7, 9, 11]]))
    b = model(_batch([[0, 2, 5, 8, 3, 19]]))
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6)
    assert not torch.allclose(a[0, 3], b[0, 3])


def test_padding_and_trimming_do_not_change_real_outputs():
    model = _model(dropout=0.0).eval()
    wide = model(_batch([[0, 0, 0, 4, 5, 6]]))[0, -1]
    narrow = model(_batch([[4, 5, 6]]))[0, -1]
    assert torch.allclose(wide, narrow, atol=1e-6)
    with pytest.raises(ValueError, match="maxlen"):
        model(_batch([[1] * 7]))


def test_a_batch_without_padding_attends_causally_with_the_same_numbers():
    from recsys.models.sequential import attention_mask

    assert attention_mask(torch.ones(2, 5, dtype=torch.bool)) is None
    padded = attention_mask(torch.tensor([[False, True, True], [True, True, True]]))
    assert padded.shape == (2, 1, 3, 3) and padded[0, 0, 2].tolist() == [False, True, True]
    block = _model(dropout=0.0).blocks[0]
    x = torch.randn(3, 6, 8, requires_grad=True)
    full = torch.ones(6, 6, dtype=torch.bool).tril().expand(3, 1, 6, 6)
    masked = block(x, full)
    (g_masked,) = torch.autograd.grad(masked.square().sum(), x)
    causal = block(x, None)
    (g_causal,) = torch.autograd.grad(causal.square().sum(), x)
    assert torch.equal(masked, causal) and torch.equal(g_masked, g_causal)


def test_room_tokens_use_the_streamer_table():
    model = _model(dropout=0.0).eval()
    as_room = model(_batch([[0, 3]], kind=[[0, ROOM]]))[0, -1]
    as_product = model(_batch([[0, 3]], kind=[[0, PRODUCT]]))[0, -1]
    assert not torch.allclose(as_room, as_product)
    assert model.logits(as_room[None], "streamer").shape == (1, 6)


# -- losses against hand computations ------------------------------------------------------

H = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
W = torch.tensor([[9.0, 9.0], [9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
T = torch.tensor([2, 3])


def test_full_ce_ignores_reserved_rows():
    # Row 0 scores items 2..4 as (1, 0, 1), row 1 as (0, 2, 2); targets 2 and 3.
    row0 = -math.log(math.e / (2 * math.e + 1))
    row1 = -math.log(math.e**2 / (1 + 2 * math.e**2))
    assert full_ce(H, W, T).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_full_ce_gradients_match_the_generic_cross_entropy():
    torch.manual_seed(0)
    h = torch.randn(7, 4, requires_grad=True)
    w = torch.randn(30, 4, requires_grad=True)
    t = torch.randint(2, 30, (7,))
    full_ce(h, w, t).backward()
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    logits = h2 @ w2.t()
    logits[:, :2] = float("-inf")
    F.cross_entropy(logits, t).backward()
    assert torch.allclose(h.grad, h2.grad, atol=1e-6)
    assert torch.allclose(w.grad, w2.grad, atol=1e-6)


def test_bce_with_one_negative():
    neg = torch.tensor([4, 2])  # scores 1 and 0
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    expected = ((sp(-1) + sp(1)) + (sp(-2) + sp(0))) / 2
    assert bce_one_negative(H, W, T, neg).item() == pytest.approx(expected, rel=1e-6)


def test_sampled_softmax_subtracts_log_q_and_masks_accidental_hits():
    q = torch.tensor([0.0, 0.0, 0.5, 0.25, 0.25])
    log_q = torch.log(q)
    negatives = torch.tensor([3, 4])
    # Row 0 (target 2): logits 1 - log .5, 0 - log .25, 1 - log .25.
    z0 = [1 - math.log(0.5), -math.log(0.25), 1 - math.log(0.25)]
    # Row 1 (target 3): negative 3 is the target itself and is masked: 2 - log .25, 2 - log .25.
    z1 = [2 - math.log(0.25), 2 - math.log(0.25)]
    ce = lambda z: -z[0] + math.log(sum(math.exp(v) for v in z))  # noqa: E731
    expected = (ce(z0) + ce(z1)) / 2
    got = sampled_softmax(H, W, T, negatives, log_q)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_gbce_matches_the_formula():
    assert gbce_beta(10, 101, 0.0) == pytest.approx(1.0)  # t = 0 is plain BCE
    assert gbce_beta(10, 101, 1.0) == pytest.approx(0.1)  # t = 1: beta = alpha
    beta = gbce_beta(2, 3, 0.5)  # alpha = 1 -> beta = 1
    assert beta == pytest.approx(1.0)
    beta = 0.3
    negatives = torch.tensor([4, 2])  # row 0: negative 2 is its target -> dropped
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    row0 = beta * sp(-1.0) + sp(1.0)
    row1 = beta * sp(-2.0) + sp(2.0) + sp(0.0)
    assert gbce(H, W, T, negatives, beta).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_full_ce_with_sparse_bonuses_matches_dense_logits():
    torch.manual_seed(1)
    h = torch.randn(3, 4, requires_grad=True)
    w = torch.randn(9, 4, requires_grad=True)
    t = torch.tensor([2, 5, 8])
    keys = torch.tensor([2, 6, 9 + 5, 18 + 3])  # (row 0, 2), (0, 6), (1, 5), (2, 3)
    values = torch.tensor([0.5, -1.0, 2.0, 0.3], requires_grad=True)
    full_ce(h, w, t, RepeatScores(keys, values, 9)).backward()
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    v2 = values.detach().clone().requires_grad_()
    logits = (h2 @ w2.t()).view(-1).index_add(0, keys, v2).view(3, 9)
    logits = torch.cat([torch.full((3, 2), float("-inf")), logits[:, 2:]], dim=1)
    F.cross_entropy(logits, t).backward()
    for a, b in ((h.grad, h2.grad), (w.grad, w2.grad), (values.grad, v2.grad)):
        assert torch.allclose(a, b, atol=1e-6)


def test_repeat_bonus_only_sees_earlier_slots():
    model = _model(dropout=0.0, repeat_bonus=True).eval()
    batch = _batch([[0, 4, 5, 4, 9, 7]])
    hidden = model(batch)
    query = torch.tensor([[False, False, False, True, False, False]])  # slot 3
    bonus = model.repeats(batch, hidden, query, "product")
    assert sorted((bonus.keys % 20).tolist()) == [4, 5]  # 9 and 7 come later
    scores = model.score_last(batch, "product")
    plain = model(batch)[:, -1] @ model.head_weight("product").t()
    boosted = (scores - plain)[0]
    assert set(torch.nonzero(boosted.abs() > 1e-6).flatten().tolist()) == {4, 5, 7, 9}


def _seller_model(**kw) -> SequentialModel:
    torch.manual_seed(0)
    config = SequentialConfig(
        n_products=20, n_streamers=6, dim=8, maxlen=6, repeat_bonus=True, seller_bonus=True, **kw
    )
    seller = np.zeros(20, dtype=np.int64)
    seller[[4, 5]], seller[6] = 3, 2  # other products have no known seller
    return SequentialModel(config, side_features={"product": {"seller": seller}})


def test_seller_bonus_counts_entries_into_the_sellers_room():
    model = _seller_model(dropout=0.0).eval()
    p, r = PRODUCT, ROOM
    batch = _batch([[0, 3, 9, 3, 4, 7]], kind=[[0, r, p, r, p, p]])
    hidden = model(batch)
    query = torch.zeros(1, 6, dtype=torch.bool)
    query[0, -1] = True
    bonus = model.repeats(batch, hidden, query, "product")
    # Clicked 9, 4, 7; entered streamer 3's room twice, which sells 4 and 5; 6's seller unseen.
    assert bonus.keys.tolist() == [4, 5, 7, 9]
    repeat = model.repeat["product"]
    slots = torch.arange(6)
    v = repeat._pair_values(batch, hidden, slots)  # (1, L, L)
    rooms, room_sum = repeat._sums(batch, v, query, slots, batch.kind == ROOM, 6)
    products, product_sum = repeat._sums(batch, v, query, slots, batch.kind == PRODUCT, 20)
    assert rooms.tolist() == [3]
    value = dict(zip(bonus.keys.tolist(), bonus.values.tolist(), strict=True))
    assert value[5] == pytest.approx(math.log1p(room_sum[0].item()), rel=1e-6)
    clicked_4 = product_sum[products.tolist().index(4)].item()
    assert value[4] == pytest.approx(math.log1p(room_sum[0].item() + clicked_4), rel=1e-6)


def test_bonus_of_one_query_slot_equals_its_row_among_all_slots():
    model = _seller_model(dropout=0.0).eval()
    p, r = PRODUCT, ROOM
    batch = _batch([[0, 3, 9, 3, 4, 7], [2, 5, 4, 3, 4, 5]], kind=[[0, r, p, r, p, p], [r] * 6])
    repeat = model.repeat["product"]
    with torch.no_grad():  # trained-looking weights: the distance buckets must line up
        repeat.distance_w.weight.copy_(torch.randn(repeat.N_DISTANCE_BUCKETS, 1))
        repeat.action_w.weight.copy_(torch.randn(repeat.action_w.num_embeddings, 1))
    hidden = model(batch)
    last = torch.zeros(2, 6, dtype=torch.bool)
    last[:, -1] = True
    alone = model.repeats(batch, hidden, last, "product")
    every = model.repeats(batch, hidden, batch.kind > 0, "product")
    rows_last = torch.tensor([4, 10])  # the last slot's row of each window among all real slots
    lookup = torch.arange(20).expand(2, 20)
    assert torch.allclose(
        alone.lookup(torch.arange(2)[:, None], lookup),
        every.lookup(rows_last[:, None], lookup),
        atol=1e-6,
    )


def test_loaded_seller_codes_regroup_the_seller_bonus():
    model = _seller_model(dropout=0.0)
    assert model.sellers.members.tolist() == [6, 4, 5]  # streamer 2 sells 6, streamer 3 4 and 5
    state = model.state_dict()
    state["codes_product_seller"] = torch.where(torch.arange(20) == 7, 5, 0)
    model.load_state_dict(state)
    assert model.sellers.members.tolist() == [7]
    assert model.sellers.indptr.tolist() == [0, 0, 0, 0, 0, 0, 1]


def test_seller_bonus_needs_the_repeat_bonus_and_a_seller_feature():
    with pytest.raises(ValueError, match="repeat_bonus"):
        SequentialConfig(seller_bonus=True)
    with pytest.raises(ValueError, match="'seller'"):
        _model(repeat_bonus=True, seller_bonus=True)


def _train_steps(model, task, batch, steps: int = 30) -> tuple[list[float], dict]:
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for step in range(steps):
        loss, parts = task(model, batch, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, parts


@pytest.mark.parametrize("name", ["bce", "sampled_softmax", "full_ce", "gbce"])
def test_seller_bonus_trains_under_every_loss(name):
    model = _seller_model(dropout=0.0)
    task = SequentialTask(LossConfig(name=name, n_negatives=8), n_entities=model.tables.sizes)
    p, r = PRODUCT, ROOM
    batch = _batch([[0, 3, 9, 3, 4, 5], [2, 5, 3, 4, 2, 4]], kind=[[0, r, p, r, p, p], [r] * 6])
    batch.action = torch.where(batch.kind == ROOM, ACTION_CODE["enter"], batch.action)
    batch.targets = {"product": torch.tensor([[0, 9, 4, 4, 5, 4], [0] * 6])}
    losses, _ = _train_steps(model, task, batch)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert model.repeat["product"].action_w.weight.grad[ACTION_CODE["enter"]].abs().item() > 0


@pytest.mark.parametrize("repeat_bonus", [False, True])
def test_scores_stay_float32_under_mixed_precision(repeat_bonus):
    # Validation runs under the trainer's bfloat16 autocast (on CUDA); CPU autocast is the same
    # mechanism.
    torch.manual_seed(0)
    model = _model(dropout=0.0, repeat_bonus=repeat_bonus).eval()
    batch = _batch([[0, 4, 5, 4, 9, 7]])
    with torch.no_grad():
        plain = model.score_last(batch, "product")
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            mixed = model.score_last(batch, "product")
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, plain, atol=0.05)


@pytest.mark.parametrize("repeat_bonus", [False, True])
@pytest.mark.parametrize("name", ["bce", "sampled_softmax", "full_ce", "gbce"])
def test_every_loss_trains_the_model(name, repeat_bonus):
    model = _model(dropout=0.0, repeat_bonus=repeat_bonus)
    task = SequentialTask(
        LossConfig(name=name, n_negatives=8, sampler="popularity"),
        n_entities=model.tables.sizes,
        counts={"product": np.arange(20), "streamer": np.ones(6)},
    )
    batch = _batch([[0, 2, 5, 7, 9, 11], [0, 0, 3, 4, 5, 6]])
    batch.targets = {"product": torch.tensor([[0, 5, 7, 9, 11, 13], [0, 0, 4, 5, 6, 7]])}
    losses, parts = _train_steps(model, task, batch)
    assert set(parts) == {"product"}
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_lagged_targets_add_a_weighted_second_loss():
    model = _model(dropout=0.0)
    batch = _batch([[0, 2, 5, 7, 9, 11], [0, 0, 3, 4, 5, 6]])
    nxt = torch.tensor([[0, 5, 7, 9, 11, 13], [0, 0, 4, 5, 6, 7]])
    lag = torch.tensor([[0, 9, 9, 13, 0, 0], [0, 0, 6, 6, 7, 0]])
    batch.targets, batch.lagged = {"product": nxt}, {"product": lag}

    def loss(weight, targets=None):
        task = SequentialTask(LossConfig(lag_loss_weight=weight), n_entities=model.tables.sizes)
        if targets is not None:
            batch_only = _batch(batch.entity.tolist())
            batch_only.targets = {"product": targets}
            return task(model, batch_only, torch.Generator())
        return task(model, batch, torch.Generator())

    plain, _ = loss(0.0, nxt)
    lagged, _ = loss(0.0, lag)
    off, parts = loss(0.0)
    assert off.item() == plain.item() and set(parts) == {"product"}
    both, parts = loss(0.5)
    assert both.item() == pytest.approx(plain.item() + 0.5 * lagged.item(), rel=1e-6)
    assert parts["product@lag"].item() == pytest.approx(lagged.item(), rel=1e-6)
    with pytest.raises(ValueError, match="lag_loss_weight"):
        SequentialRecommender(loss=LossConfig(lag_loss_weight=1.0))
    with pytest.raises(ValueError, match="invalid LossConfig"):
        LossConfig(lag_loss_weight=-1.0)


def test_loss_config_rejects_unknown_names():
    with pytest.raises(ValueError, match="loss must be"):
        LossConfig(name="softmax")


# -- the recommender adapter ----------------------------------------------------------------


def _toy_split_data(n_users=60, n_items=12, length=8, seed=0):
    """Users walk items cyclically (item i -> i + 1), so the next item is learnable."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, n_items, n_users)
    items = (start[:, None] + np.arange(length)) % n_items + 2
    user = np.repeat(np.arange(n_users) + 2, length)
    inter = Interactions(
        user=user,
        item=items.ravel(),
        ts=np.tile(np.arange(length), n_users),
        user_vocab=Vocab.build("user", np.arange(n_users)),
        item_vocab=Vocab.build("item", np.arange(n_items)),
    )
    from recsys.data.splits import leave_one_out

    return leave_one_out(inter)


def test_recommender_learns_a_cyclic_walk():
    split = _toy_split_data()
    rec = SequentialRecommender(
        model=SequentialConfig(maxlen=8, dim=16, dropout=0.0),
        trainer=TrainerConfig(max_epochs=30, batch_size=16, lr=0.01, progress=False),
        validation=Validation({"product": split}, protocol="full", max_users=None),
    )
    rec.fit(split.train)
    res = evaluate(rec, split, protocol="full", stage="test", ks=(1,))
    assert res.metrics["hr@1"] > 0.9
    assert rec.fit_result.best_value > 0.9
    assert rec.score(np.array([2, 3]), split.test_history).shape == (2, split.n_items)


def test_user_embedding_tells_users_with_the_same_window_apart():
    batch = _batch([[0, 2, 5, 7], [0, 2, 5, 7]])
    batch.user = torch.tensor([3, 4])
    plain = _model(dropout=0.0).eval()
    assert torch.allclose(plain(batch)[0], plain(batch)[1])
    model = _model(dropout=0.0, user_embedding=True, n_users=5).eval()
    assert model.tables.sizes["user"] == 6
    hidden = model(batch)
    assert not torch.allclose(hidden[0, -1], hidden[1, -1])
    batch.user = None
    with pytest.raises(ValueError, match="must carry them"):
        model(batch)
    with pytest.raises(ValueError, match="n_users"):
        _model(user_embedding=True)


def test_recommender_with_user_embedding_trains_and_scores():
    split = _toy_split_data()
    rec = SequentialRecommender(
        model=SequentialConfig(maxlen=8, dim=16, dropout=0.0, user_embedding=True),
        trainer=TrainerConfig(max_epochs=2, batch_size=16, lr=0.01, progress=False),
    )
    rec.fit(split.train)
    log = rec.tokens(split.train)
    assert rec.model.tables.sizes["user"] == log.n_users + 1
    batch = next(iter(WindowDataset(training_windows(log, maxlen=8, heads={"product": PRODUCT}))
                      .epoch(batch_size=4, seed=0, epoch=0)))  # fmt: skip
    assert batch.user is not None and batch.user.shape == (4,)
    assert np.isfinite(rec.score(np.array([2, 3]), split.test_history)).all()


def test_context_streams_stop_at_the_history_horizon(tiny_world):
    context = world_context(tiny_world)
    split = live_time_split(tiny_world, target="product")
    rec = SequentialRecommender(context=context)
    log = rec.tokens(split.train)
    assert log.ts.max() <= horizon(split.train) < split.meta["valid_ts"]
    assert rec.tokens(split.test_history).ts.max() < split.meta["test_ts"]
    # The world's product tokens are the product split's interactions (same vocabularies).
    products = log.entity[log.kind == PRODUCT]
    assert len(products) == len(split.train.items)
    assert np.array_equal(np.sort(products), np.sort(split.train.items))
    batch = scoring_batch(log, np.arange(5), 10)
    assert batch.entity.shape[0] == 5


def test_room_head_needs_a_context():
    with pytest.raises(ValueError, match="TokenContext"):
        SequentialRecommender(head="streamer")


def test_repeated_actions_within_a_visit_are_not_targets():
    r, p = ROOM, PRODUCT
    log = TokenLog.from_events(
        user=np.zeros(7, dtype=np.int64),
        kind=np.array([r, p, p, p, r, r, p]),
        entity=np.array([7, 2, 2, 3, 8, 8, 2]),
        action=np.array([2, 3, 4, 3, 2, 2, 3]),
        ts=np.arange(7),
        n_users=1,
    )
    # enter 7, click 2, cart 2 (same visit: no), click 3, enter 8, enter 8 again (no), click 2.
    assert log.first_in_visit().tolist() == [True, True, False, True, True, False, True]
    w = training_windows(log, maxlen=6, heads={"product": p, "streamer": r})
    assert w.targets["product"].tolist() == [[2, 3, 3, 2, 2, 2]]
    assert w.targets["streamer"].tolist() == [[8, 8, 8, 8, 0, 0]]


def test_lagged_targets_are_the_first_fresh_choice_at_least_the_lag_later():
    r, p = ROOM, PRODUCT
    log = TokenLog.from_events(
        user=np.array([0, 0, 1, 1, 1, 1, 1, 1, 1]),
        kind=np.array([p, p, r, p, p, p, r, p, p]),
        entity=np.array([6, 9, 7, 2, 2, 3, 8, 4, 5]),
        action=np.array([3, 3, 2, 3, 4, 3, 2, 3, 3]),
        ts=np.array([0, 100, 0, 10, 20, 100, 1000, 1010, 5000]),
        n_users=2,
    )
    heads = {"product": p, "streamer": r}
    # User 0 has nothing 500 s after any token (user 1's later tokens must not count): no window.
    # User 1: enter 7, click 2, cart 2 (no target), click 3 | enter 8, click 4 | click 5.
    w = training_windows(log, maxlen=6, heads=heads, target_lag_s=500)
    assert w.users.tolist() == [1]
    assert w.targets["product"].tolist() == [[4, 4, 4, 4, 5, 5]]
    assert w.targets["streamer"].tolist() == [[8, 8, 8, 8, 0, 0]]
    assert w.target_time["product"].tolist() == [[1010] * 4 + [5000] * 2]
    # Targets come from the whole stream: the earlier window's lagged product lies past its end.
    w = training_windows(log, maxlen=3, heads=heads, target_lag_s=500, every_target=True)
    assert w.targets["product"].tolist() == [[4, 5, 5], [4, 4, 4]]
    assert w.targets["streamer"].tolist() == [[8, 0, 0], [8, 8, 8]]
    # keep_next: the next targets stay, the lagged ones come as second targets.
    both = training_windows(log, maxlen=6, heads=heads, target_lag_s=500, keep_next=True)
    plain = training_windows(log, maxlen=6, heads=heads)
    assert both.users.tolist() == [0, 1]  # user 0 has next targets, no lagged ones
    assert np.array_equal(both.targets["product"], plain.targets["product"])
    assert both.lagged["product"].tolist() == [[0] * 6, [4, 4, 4, 4, 5, 5]]
    assert both.lagged_time["product"][1].tolist() == [1010] * 4 + [5000] * 2
    with pytest.raises(ValueError, match="target_lag_s"):
        SequentialRecommender(targets="future", target_lag_s=60)


def test_later_visit_targets_come_from_the_next_room_visit_on():
    r, p = ROOM, PRODUCT
    kind = np.array([[r, p, p, r, p, p]])
    entity = np.array([[7, 2, 3, 8, 4, 5]])
    visit = next_visit(kind)
    assert visit.tolist() == [[3, 3, 3, 6, 6]]
    first = np.minimum(visit + 1, 6)
    low = future_of_kind(kind, entity, p, np.zeros((1, 5)), first=first)
    high = future_of_kind(kind, entity, p, np.full((1, 5), 0.99), first=first)
    assert low.tolist() == [[4, 4, 4, 0, 0]] and high.tolist() == [[5, 5, 5, 0, 0]]
    rooms = future_of_kind(kind, entity, r, np.zeros((1, 5)), first=visit)
    assert rooms.tolist() == [[8, 8, 8, 0, 0]]


def test_sellers_count_only_shelves_up_to_the_horizon(tiny_world):
    context = world_context(tiny_world)
    late = int(context.shelf["start"].max())
    early = int(np.sort(context.shelf["start"])[len(context.shelf["start"]) // 3])
    every, some = context.sellers(late), context.sellers(early)
    shown = np.unique(context.shelf["product"])
    assert (every[shown] >= 2).all() and (every[np.setdiff1d(np.arange(2, 10), shown)] == 0).all()
    assert (some > 0).sum() < (every > 0).sum()
    one = int(shown[0])
    rows = context.shelf["product"] == one
    counts = np.bincount(context.shelf["streamer"][rows])
    assert every[one] == int(np.argmax(counts))


def test_seller_uses_the_streamer_table_and_side_features_reach_the_output():
    config = SequentialConfig(n_products=6, n_streamers=4, dim=8, maxlen=4, side_in_output=True)
    side = {"product": {"seller": np.array([0, 0, 3, 3, 2, 0]), "category": np.arange(6) % 2}}
    model = SequentialModel(config, side_features=side)
    assert "product_seller" not in model.tables.sizes  # shared with the streamer table
    weight = model.head_weight("product")
    tables = model.tables
    expected = (
        tables.weight("product")[2]
        + tables.weight("streamer")[3]
        + tables.weight("product_category")[0]
    )
    assert torch.allclose(weight[2], expected)
    assert model(_batch([[0, 2, 3, 5]])).shape == (1, 4, 8)


def test_live_candidates_mask_what_was_on_air_at_each_target():
    intervals = (np.array([2, 3, 4]), np.array([0, 10, 0]), np.array([5, 20, 30]))
    times = np.array([[3, 12, 0]])
    live = LiveCandidates.build(intervals, times, np.array([[True, True, False]]), 6)
    mask = live.mask(live.row[0, :2], np.array([2, 5]))
    assert mask.tolist() == [
        [False, False, True, False, True, False],  # t=3: items 2 and 4
        [False, False, False, True, True, True],  # t=12: 3 and 4, and the target 5
    ]


def test_full_ce_over_allowed_items_equals_a_smaller_softmax():
    h = torch.tensor([[1.0, 0.5]])
    w = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    allowed = torch.tensor([[False, False, True, True, False]])
    got = full_ce(h, w, torch.tensor([2]), allowed=allowed).item()
    assert got == pytest.approx(-math.log(math.e / (math.e + math.exp(0.5))), rel=1e-6)


@pytest.mark.parametrize(("lag_loss_weight", "target_lag_s"), [(0.0, 0.0), (1.0, 3600.0)])
def test_live_training_runs_on_a_world(tiny_world, lag_loss_weight, target_lag_s):
    context = world_context(tiny_world)
    split = live_time_split(tiny_world, target="product")
    rec = SequentialRecommender(
        model=SequentialConfig(maxlen=20, dim=16, repeat_bonus=True),
        loss=LossConfig(lag_loss_weight=lag_loss_weight),
        trainer=TrainerConfig(max_epochs=1, batch_size=64, progress=False),
        context=context,
        live_training=True,
        target_lag_s=target_lag_s,
    )
    rec.fit(split.train)
    assert np.isfinite(rec.fit_result.history[-1]["train/loss"])
    with pytest.raises(ValueError, match="targets='next'"):
        WindowDataset(
            training_windows(
                TokenLog.from_sequences(_seqs([[2, 3]], 4)), maxlen=2, heads={"product": PRODUCT}
            ),
            targets="future",
            live={"product": (np.array([2]),) * 3},
        )


def test_repeat_scale_is_calibrated_on_validation(tiny_world):
    context = world_context(tiny_world)
    split = live_time_split(tiny_world, target="room")
    rec = SequentialRecommender(
        model=SequentialConfig(maxlen=20, dim=16, repeat_bonus=True),
        trainer=TrainerConfig(max_epochs=1, batch_size=64, progress=False),
        head="streamer",
        context=context,
        repeat_scales=(0.0, 1.0, 4.0),
        validation=Validation({"streamer": split}, protocol="live"),
    )
    rec.fit(split.train)
    scale = rec.calibrated["streamer"]
    assert scale in (0.0, 1.0, 4.0)
    assert float(rec.model.repeat["streamer"].score_scale) == scale
