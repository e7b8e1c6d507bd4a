"""The two-tower model: pooled tables, towers, losses, point-in-time features, the adapter."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recsys.data.availability import live_sets
from recsys.data.interactions import UserSequences
from recsys.data.splits import live_time_split
from recsys.evaluation import evaluate
from recsys.inputs.tokens import ROOM, world_context
from recsys.inputs.two_tower import QueryBuilder, TwoTowerBatch, TwoTowerDataset, training_examples
from recsys.inputs.world_features import WorldFeatures
from recsys.models.embeddings import EntityBags, EntityTables
from recsys.models.sequential import SequentialConfig, SequentialModel
from recsys.models.two_tower import TwoTowerConfig, TwoTowerModel
from recsys.recommenders.build import route
from recsys.recommenders.registry import model_spec
from recsys.recommenders.two_tower import TwoTowerRecommender, Validation
from recsys.tasks.two_tower import (
    TwoTowerLossConfig,
    TwoTowerTask,
    candidate_log_q,
    in_batch_softmax,
    live_softmax,
)
from recsys.training.trainer import Trainer, TrainerConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tiny_world):
    context = world_context(tiny_world)
    v = context.vocabs
    features = WorldFeatures.from_tables(
        tiny_world, users=v.user, products=v.product, streamers=v.streamer
    )
    return context, features


def _seqs(rows: list[list[int]], n_items: int) -> UserSequences:
    lengths = [len(r) for r in rows]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.array([i for r in rows for i in r], dtype=np.int64)
    return UserSequences(indptr, items, np.arange(len(items), dtype=np.int64), n_items)


def _batch(products: list[list[int]], **extra) -> TwoTowerBatch:
    entity = torch.tensor(products)
    b = entity.shape[0]
    zeros = torch.zeros(b, dtype=torch.int64)
    fields = dict(
        head="product",
        user=torch.arange(b) + 2,
        product_entity=entity,
        product_action=(entity > 0).long(),
        product_age=(entity > 0).long(),
        room_entity=torch.zeros(b, 0, dtype=torch.int64),
        room_age=torch.zeros(b, 0, dtype=torch.int64),
        hour=zeros,
        weekday=zeros,
        room=zeros,
        demographics=torch.zeros(b, 0, dtype=torch.int64),
    )
    fields.update(extra)
    return TwoTowerBatch(**fields)


def _tiny_model(**overrides) -> TwoTowerModel:
    config = TwoTowerConfig(
        n_users=6,
        n_products=8,
        dim=8,
        out_dim=4,
        hidden=16,
        dropout=0.0,
        context=False,
        demographics=False,
        **overrides,
    )
    side = {"product": {"category": np.array([0, 0, 1, 1, 2, 2, 1, 2])}}
    return TwoTowerModel(config, side_features=side).eval()


# -- pooled tables ----------------------------------------------------------------------------


@pytest.mark.parametrize("portable", [False, True], ids=["kernel sums", "portable pooling"])
@pytest.mark.parametrize("grad", [True, False], ids=["jagged batch", "per table"])
def test_entity_bags_sum_weighted_rows_and_skip_padding(grad, portable):
    bags = EntityBags(sizes={"a": 5, "b": 3}, dim=4, portable_pooling=portable)
    with torch.no_grad():
        bags.weight("a")[0] = float("inf")  # padding never reaches a sum, whatever row 0 holds
    ids = torch.tensor([[1, 2, 0], [0, 0, 0]])
    weights = torch.tensor([[1.0, 2.0, 7.0], [1.0, 1.0, 1.0]])
    with torch.set_grad_enabled(grad):
        pooled, single, other, empty = bags(
            [
                ("a", ids, weights),
                ("a", torch.tensor([[4]]), None),
                ("b", torch.tensor([[2], [0]]), None),
                ("b", torch.zeros(3, 0, dtype=torch.int64), None),
            ]
        )
    assert torch.equal(empty, torch.zeros(3, 4))
    w = bags.weight("a")
    assert pooled.shape == (2, 4) and single.shape == (1, 4) and other.shape == (2, 4)
    assert torch.allclose(pooled[0], w[1] + 2 * w[2])  # the padding slot's weight 7 is unused
    assert torch.equal(pooled[1], torch.zeros(4)) and torch.equal(other[1], torch.zeros(4))
    assert torch.allclose(single[0], w[4])
    with pytest.raises(KeyError, match="no embedding tables"):
        bags([("c", ids, None)])


# -- towers -----------------------------------------------------------------------------------


def test_towers_shapes_normalised_and_padding_ignored():
    model = _tiny_model()
    q = model.query(_batch([[2, 3, 4], [0, 0, 5]]), "product")
    assert q.shape == (2, 4)
    assert torch.allclose(q.norm(dim=1), torch.ones(2), atol=1e-6)
    narrow = model.query(_batch([[5]], user=torch.tensor([3])), "product")
    assert torch.allclose(q[1], narrow[0], atol=1e-6)  # left padding changes nothing
    c = model.candidates("product", torch.arange(8))
    assert c.shape == (8, 4) and torch.allclose(c.norm(dim=1), torch.ones(8), atol=1e-6)
    with pytest.raises(KeyError, match="no head"):
        model.candidates("streamer", torch.arange(3))


def test_repeat_bonus_counts_only_entities_in_the_bag():
    model = _tiny_model()
    batch = _batch([[2, 3, 3], [0, 0, 5]])
    bonus = model.pair_bonus(batch, "product", torch.tensor([3, 2, 5, 6]))
    # Zero-initialised weights: log(1 + occurrences).
    expected = torch.tensor([[math.log(3), math.log(2), 0.0, 0.0], [0.0, 0.0, math.log(2), 0.0]])
    assert torch.allclose(bonus, expected, atol=1e-6)
    assert torch.allclose(model.dense_bonus(batch, "product")[:, [3, 2, 5, 6]], expected, atol=1e-6)


def test_score_is_the_inner_product_plus_the_sparse_bonus():
    model = _tiny_model()
    batch = _batch([[2, 3, 4], [0, 6, 6]])
    scores = model.score_all(batch, "product")
    q = model.query(batch, "product") / model.temperature
    dense = q @ model.candidates("product", torch.arange(8)).t()
    assert torch.allclose(scores, dense + model.dense_bonus(batch, "product"), atol=1e-5)


def test_scoring_without_gradients_matches_the_training_lookup():
    torch.manual_seed(0)
    model = _tiny_model()
    batch = _batch([[2, 3, 4], [0, 6, 6]])
    trained = model.query(batch, "product")
    with torch.no_grad():
        assert torch.allclose(model.query(batch, "product"), trained, atol=1e-6)


def test_scores_stay_float32_under_mixed_precision():
    # Validation runs under the trainer's bfloat16 autocast (on CUDA); CPU autocast is the same
    # mechanism.
    torch.manual_seed(0)
    model = _tiny_model()
    batch = _batch([[2, 3, 4], [0, 6, 6]])
    with torch.no_grad():
        plain = model.score_all(batch, "product")
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            mixed = model.score_all(batch, "product")
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, plain, atol=0.02 * plain.abs().max().item())


# -- the loss ---------------------------------------------------------------------------------


def test_logq_correction_matches_a_hand_computation():
    # Two rows, positives items 2 and 3, one mixed negative item 4; 4 real items (2..5).
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]])
    ids = torch.tensor([2, 3, 4])
    freq = torch.tensor([0.0, 0.0, 0.5, 0.25, 0.25, 0.0])
    log_q = candidate_log_q(freq, ids, batch_size=2, n_mixed=1, n_real=4)
    # Expected occurrences: 2 * p + 1 / 4.
    assert torch.allclose(log_q, torch.log(torch.tensor([1.25, 0.75, 0.75])))
    got = in_batch_softmax(logits, ids[:2], ids, log_q)
    c = [math.log(1.25), math.log(0.75), math.log(0.75)]
    row0 = [2.0 - c[0], 1.0 - c[1], 0.5 - c[2]]
    row1 = [0.0 - c[0], 3.0 - c[1], 1.0 - c[2]]
    want = 0.5 * (
        -row0[0]
        + math.log(sum(math.exp(x) for x in row0))
        - row1[1]
        + math.log(sum(math.exp(x) for x in row1))
    )
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_accidental_hits_are_masked():
    logits = torch.tensor([[1.0, 5.0, 0.2, 0.3], [4.0, 1.0, 0.7, 0.1], [0.0, 0.5, 2.0, 9.0]])
    positives = torch.tensor([7, 7, 3])  # rows 0 and 1 chose the same item
    ids = torch.tensor([7, 7, 3, 3])  # and a mixed negative equals row 2's positive
    got = in_batch_softmax(logits, positives, ids)
    keep = [[0, 2, 3], [1, 2, 3], [0, 1, 2]]  # each row without its accidental hits
    want = torch.stack(
        [
            F.cross_entropy(logits[i, keep[i]][None], torch.tensor([keep[i].index(i)]))
            for i in range(3)
        ]
    ).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_mixed_negatives_join_the_softmax_and_repeat_per_generator():
    model = _tiny_model()
    counts = {"product": np.array([0, 0, 5, 3, 1, 1, 0, 0], dtype=np.float64)}
    task = TwoTowerTask(
        TwoTowerLossConfig(n_mixed=5), n_entities={"product": 8}, counts=counts
    ).eval()
    batch = _batch([[2, 3], [0, 4]], target=torch.tensor([2, 5]))
    negatives = task.negatives("product", torch.Generator().manual_seed(3))
    assert negatives.shape == (5,) and bool(((negatives >= 2) & (negatives < 8)).all())
    loss, parts = task(model, batch, torch.Generator().manual_seed(3))
    ids = torch.cat([batch.target, negatives])
    freq = torch.from_numpy(counts["product"] / 10).float()
    log_q = candidate_log_q(freq, ids, 2, 5, 6)
    want = in_batch_softmax(model.logits(batch, "product", ids), batch.target, ids, log_q)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    assert set(parts) == {"product"}
    no_mixed = TwoTowerTask(TwoTowerLossConfig(), n_entities={"product": 8}, counts=counts)
    assert no_mixed(model, batch, torch.Generator())[0].item() != pytest.approx(loss.item())


@pytest.mark.parametrize("learn", [True, False])
def test_temperature_is_learned_only_when_asked(learn):
    torch.manual_seed(0)
    model = _tiny_model(learn_temperature=learn).train()
    task = TwoTowerTask(
        TwoTowerLossConfig(), n_entities={"product": 8}, counts={"product": np.ones(8)}
    )
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    before = model.temperature.item()
    batch = _batch([[2, 3], [4, 5], [6, 7]], target=torch.tensor([3, 5, 7]))
    for _ in range(5):
        loss, _ = task(model, batch, torch.Generator())
        opt.zero_grad()
        loss.backward()
        opt.step()
    moved = abs(model.temperature.item() - before) > 1e-4
    assert moved == learn


def test_live_softmax_ranks_the_target_among_what_was_on_air(world):
    context, features = world
    examples = training_examples(context.log, ("product", "streamer"), world=features)
    sizes = {"product": context.n_products, "streamer": context.n_streamers}
    data = TwoTowerDataset(
        examples,
        QueryBuilder(context.log, bag_size=4, world=features),
        live={h: context.availability[h] for h in sizes},
        n_entities=sizes,
    )
    batches = {}
    for rows in data.order(seed=0, epoch=0, batch_size=64):
        head = examples.heads[int(examples.head[rows[0]])]
        batches.setdefault(head, (rows, data.batch(rows)))
    for head, (rows, batch) in batches.items():
        indptr, items = live_sets(*context.availability[head], examples.ts[rows])
        for i in range(0, len(rows), 7):
            want = set(items[indptr[i] : indptr[i + 1]].tolist()) | {int(examples.target[rows[i]])}
            assert set(torch.nonzero(batch.allowed[i]).flatten().tolist()) == want
    rooms, products = batches["streamer"][1], batches["product"][1]
    live, shown = rooms.allowed, rooms.allowed_showing
    assert bool((shown[~live] == 0).all()) and float((shown[live] > 0).float().mean()) > 0.9
    config = TwoTowerConfig(
        n_users=len(context.vocabs.user),
        n_products=context.n_products,
        n_streamers=context.n_streamers,
        dim=8,
        out_dim=8,
        hidden=16,
        bag_size=4,
        context=False,
        demographics=False,
        room_showing=False,
    )
    model = TwoTowerModel(config).eval()
    got = live_softmax(model, products)
    logits = model.score_all(products, "product").masked_fill(~products.allowed, float("-inf"))
    assert got.item() == pytest.approx(F.cross_entropy(logits, products.target).item(), rel=1e-5)
    assert torch.isfinite(live_softmax(model, rooms))
    # Rooms embedded once per distinct (room, product shown): the loss of one embedding per pair.
    model = TwoTowerModel(dataclasses.replace(config, room_showing=True)).eval()
    q = model.query(rooms, "streamer").float() / model.temperature
    r, e = live.nonzero(as_tuple=True)
    pair = (q[r] * model.candidates("streamer", e, shown[r, e]).float()).sum(-1)
    bonus = model.pair_bonus(rooms, "streamer", torch.arange(live.shape[1]))
    logits = torch.full(live.shape, float("-inf")).index_put((r, e), pair + bonus[r, e])
    want = F.cross_entropy(logits, rooms.target).item()
    assert live_softmax(model, rooms).item() == pytest.approx(want, rel=1e-5)


# -- data -------------------------------------------------------------------------------------


def test_query_features_only_use_events_before_the_target(tiny_world, world):
    context, features = world
    builder = QueryBuilder(context.log, bag_size=8, world=features)
    examples = training_examples(context.log, ("product", "streamer"), world=features)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(examples), size=12, replace=False)
    v = context.vocabs
    for i in rows:
        u, t = examples.user[i : i + 1], examples.ts[i : i + 1]
        got = builder.features(u, t)
        # The same question asked of a world that ends one second before the target.
        past = tiny_world.events.loc[tiny_world.events["ts"] < t[0]]
        cut = dataclasses.replace(tiny_world, events=past)
        cut_features = WorldFeatures.from_tables(
            cut, users=v.user, products=v.product, streamers=v.streamer
        )
        cut_builder = QueryBuilder(world_context(cut).log, bag_size=8, world=cut_features)
        want = cut_builder.features(u, t)
        for name in ("entity", "action", "age"):
            assert np.array_equal(got.products[name], want.products[name])
            assert np.array_equal(got.rooms[name], want.rooms[name])
        assert got.room.tolist() == want.room.tolist()
        assert (got.hour, got.weekday) == (want.hour, want.weekday)


def test_profile_snapshots_are_cut_at_or_before_the_query(tiny_world, world):
    context, features = world
    until = int(tiny_world.events["ts"].max())
    snaps = features.with_profiles(until).profiles
    assert (np.diff(snaps.cuts) > 0).all() and snaps.cuts[-1] == until + 1
    t = np.array([snaps.cuts[1] - 1, snaps.cuts[1], snaps.cuts[1] + 5])
    user = np.full(3, 5)
    rows = snaps.at(user, t)
    assert np.array_equal(rows[0], snaps.matrices[0, 5])
    assert np.array_equal(rows[1], snaps.matrices[1, 5]) and np.array_equal(rows[2], rows[1])
    assert snaps.at(user[:1], np.array([snaps.cuts[0] - 1])).sum() == 0.0


def test_room_examples_carry_the_product_on_show(world):
    context, features = world
    examples = training_examples(context.log, ("streamer",), world=features)
    assert (examples.head == 0).all() and len(examples) > 0
    shown = examples.showing > 0
    assert shown.mean() > 0.9
    sc = features.showcase
    i = int(np.flatnonzero(shown)[0])
    s, t = examples.target[i], examples.ts[i]
    started = (sc.streamer == s) & (sc.keys & ((1 << 34) - 1) <= t)
    assert examples.showing[i] == sc.product[np.flatnonzero(started)[-1]]
    fresh = training_examples(context.log, ("streamer",), fresh_only=False)
    assert len(fresh) == int((context.log.kind == ROOM).sum()) >= len(examples)


def test_dataset_batches_are_one_head_each_and_seeded(world):
    context, features = world
    examples = training_examples(context.log, ("product", "streamer"), world=features)
    data = TwoTowerDataset(examples, QueryBuilder(context.log, bag_size=4), max_lag_s=3600)
    first = list(data.epoch(batch_size=256, seed=1, epoch=0))
    again = list(data.epoch(batch_size=256, seed=1, epoch=0, start_step=2))
    assert len(first) == data.n_batches(256)
    assert sum(b.size for b in first) == len(data)
    assert {b.head for b in first} == {"product", "streamer"}
    assert torch.equal(first[2].product_entity, again[0].product_entity)
    other = next(iter(data.epoch(batch_size=256, seed=2, epoch=0)))
    assert not torch.equal(first[0].user, other.user)


# -- the recommender --------------------------------------------------------------------------


def _small_config(**overrides) -> TwoTowerConfig:
    return TwoTowerConfig(**{"dim": 8, "out_dim": 8, "hidden": 16, "bag_size": 8, **overrides})


def test_recommender_fits_and_scores_both_heads_of_a_world(tiny_world, world):
    context, features = world
    product = live_time_split(tiny_world, target="product")
    room = live_time_split(tiny_world, target="room")
    rec = TwoTowerRecommender(
        model=_small_config(profile=True),
        trainer=TrainerConfig(max_epochs=1, batch_size=128, progress=False),
        context=context,
        world=features,
        validation=Validation({"product": product, "streamer": room}, protocol="live"),
    )
    rec.fit(product.train, item_features=product.item_features)
    assert set(rec.fit_result.history[-1]) >= {"val/product/ndcg@10", "val/streamer/ndcg@10"}
    users = np.unique(product.test.user)[:5]
    for head, split, n in (
        ("product", product, context.n_products),
        ("streamer", room, context.n_streamers),
    ):
        view = rec.for_head(head)
        scores = view.score(users, split.test_history)
        assert scores.shape == (5, n) and scores.dtype == np.float32
        assert np.isfinite(scores).all()
        q = view.query_embeddings(users, split.test_history)
        h = int(split.test_history.ts.max())
        c = view.candidate_embeddings(head, at=h)
        bonus = view.repeat_scores(users, split.test_history).toarray()
        assert np.allclose(scores, q @ c.T + bonus, atol=1e-4)
        # A request at the horizon's next second sees the same history: the same scores.
        ids = np.arange(n)
        at_request = view.request_scores(users, np.full(len(users), h + 1), ids)
        assert np.allclose(at_request[:, 2:], scores[:, 2:], atol=1e-4)
        some = np.stack([ids[2:7], ids[7:12]] * 3)[: len(users)]  # (Q, 5) per-request candidates
        picked = view.request_scores(users, np.full(len(users), h + 1), some)
        assert np.allclose(picked, np.take_along_axis(scores, some, axis=1), atol=1e-4)
        # The request path spreads the model's pair bonus in numpy: the same floats exactly.
        batch = view.request_batch(users, np.full(len(users), h + 1))
        with torch.no_grad():
            model_bonus = view.model.pair_bonus(batch, head, torch.from_numpy(ids))
            model_bonus = (model_bonus * view.model.bonus_scale(head)).float().numpy()
        spread = view.request_bonus(batch, ids)
        assert np.array_equal(spread, model_bonus) and (spread != 0).any()
        res = evaluate(view, split, protocol="live", stage="test", ks=(10,))
        assert 0.0 < res.metrics["ndcg@10"] <= 1.0


def test_recommender_on_plain_sequences_learns_a_cyclic_walk():
    rows = [[2 + (u + k) % 6 for k in range(7)] for u in range(40)]
    train = _seqs(rows, 8)
    rec = TwoTowerRecommender(
        model=_small_config(hidden=32, temperature=0.1, dropout=0.0),
        trainer=TrainerConfig(max_epochs=30, batch_size=32, lr=0.01, progress=False),
    )
    rec.fit(train)
    scores = rec.score(np.arange(6), train)
    nxt = [2 + (u + 7) % 6 for u in range(6)]
    top = np.argsort(-scores[:, 2:], axis=1)[:, :2] + 2
    assert sum(n in t for n, t in zip(nxt, top, strict=True)) >= 5


def test_same_seed_gives_the_same_scores(tiny_world, world):
    context, _ = world
    split = live_time_split(tiny_world, target="room")

    def fit():
        return TwoTowerRecommender(
            model=_small_config(),
            loss=TwoTowerLossConfig(n_mixed=16),
            trainer=TrainerConfig(max_epochs=1, batch_size=128, progress=False, seed=3),
            head="streamer",
            context=context,
            query_lag_s=86_400,
        ).fit(split.train)

    users = np.unique(split.valid.user)[:8]
    a, b = fit().score(users, split.train), fit().score(users, split.train)
    assert np.array_equal(a, b)


def test_resumed_training_ends_where_an_uninterrupted_run_does(tmp_path, world):
    context, features = world
    examples = training_examples(context.log, ("product",), world=features)
    sizes = {"product": context.n_products}
    counts = {"product": examples.counts("product", context.n_products)}

    def trainer(run_dir, epochs):
        torch.manual_seed(0)
        model = TwoTowerModel(
            TwoTowerConfig(
                n_users=len(context.vocabs.user),
                n_products=context.n_products,
                dim=8,
                out_dim=8,
                hidden=16,
                bag_size=4,
                context=False,
                demographics=False,
            )
        )
        return Trainer(
            config=TrainerConfig(max_epochs=epochs, batch_size=256, progress=False),
            model=model,
            task=TwoTowerTask(TwoTowerLossConfig(n_mixed=8), n_entities=sizes, counts=counts),
            dataset=TwoTowerDataset(examples, QueryBuilder(context.log, bag_size=4), 3600),
            run_dir=run_dir,
        )

    straight = trainer(tmp_path / "a", 2)
    straight.fit()
    trainer(tmp_path / "b", 1).fit()
    resumed = trainer(tmp_path / "b", 2)
    resumed.fit(resume=True)
    for (name, x), (_, y) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name


# -- shared tables ----------------------------------------------------------------------------


def test_sequential_tables_load_into_the_two_tower_tables(tiny_world, world):
    context, _ = world
    split = live_time_split(tiny_world, target="product")
    sequential = SequentialModel(
        SequentialConfig(n_products=context.n_products, n_streamers=context.n_streamers, dim=8),
        side_features={"product": {"category": context.side_features["product"]["category"]}},
    )
    rec = TwoTowerRecommender(model=_small_config(), context=context, pretrained=sequential.tables)
    model = rec.build(split.train, item_features=split.item_features)
    for name in ("product", "streamer", "product_category"):
        assert torch.equal(model.tables.weight(name), sequential.tables.weight(name))
    assert not torch.equal(
        model.tables.weight("user")[2:], torch.zeros_like(model.tables.weight("user")[2:])
    )
    bags = EntityBags(sizes={"product": context.n_products}, dim=8)
    bags.load_from(sequential.tables, ["product"], tie=True)
    with torch.no_grad():
        sequential.tables.weight("product")[5] += 1.0
    assert torch.equal(bags.weight("product")[5], sequential.tables.weight("product")[5])
    with pytest.raises(ValueError, match="vocabularies or dims differ"):
        bags.load_from(EntityTables(sizes={"product": 3}, dim=8), ["product"])


def test_benchmark_hyperparameters_are_routed_by_config():
    spec = model_spec("two_tower")
    r = route(spec, {"dim": 32, "n_mixed": 64, "lr": 0.01, "heads": ["product"], "query_lag": 0.5})
    assert (
        r["model"] == {"dim": 32} and r["loss"] == {"n_mixed": 64} and r["trainer"] == {"lr": 0.01}
    )
    assert r["task"] == {"heads": ("product",), "query_lag": 0.5}
    with pytest.raises(KeyError, match="unknown hyperparameter"):
        route(spec, {"nope": 1})


def test_two_tower_is_a_benchmark_candidate(tiny_world, world):
    from recsys.recommenders.candidates import build_candidates, quick_grids

    context, _ = world
    split = live_time_split(tiny_world, target="room")
    (candidate,) = build_candidates(
        split, ["two_tower"], grids=quick_grids(), protocol="live", context=context
    )
    rec = candidate.build(**candidate.grid[0])
    assert isinstance(rec, TwoTowerRecommender)
    assert rec.head == "streamer" and rec.heads == ("streamer",)
    assert rec.loss.negatives == "live" and rec.trainer.max_epochs == 2
    (plain,) = build_candidates(split, ["two_tower"], protocol="full")
    assert plain.build().loss.negatives == "in_batch"


@pytest.mark.parametrize("name", ["two_tower", "two_tower_live"])
def test_shipped_model_configs_build_the_typed_configs(name):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        cfg = compose(config_name="train", overrides=[f"model={name}", "run_dir=unused"])
    c = OmegaConf.to_container(cfg, resolve=True)
    settings, loss, task = c["model"], c["loss"], c["task"]
    assert settings.pop("name") == "two_tower"
    r = route(model_spec("two_tower"), {**settings, **loss, **task})
    assert not r["trainer"] and set(r["task"]) >= {"heads", "side_features", "query_lag"}
    assert TwoTowerConfig(**r["model"]).bag_size > 0
    negatives = TwoTowerLossConfig(**r["loss"]).negatives
    assert negatives == ("live" if name == "two_tower_live" else "in_batch")
