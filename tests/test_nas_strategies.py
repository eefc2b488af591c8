"""Search strategies: who changes what in which step, the BinaryConnect gradient, alpha init, resume."""
from __future__ import annotations

import io

import pytest
import torch

from mmsearch.config import ConfigError, load_config
from mmsearch.nas import STRATEGIES, Supernet, SupernetConfig, arch_step, initial_alphas, make_arch_optimizer, make_weight_optimizer, weight_step
from mmsearch.nas.mixed_op import ChainPlan, PathPlan
from mmsearch.nas.proxyless import binary_connect_grad
from test_nas_tiny import TinyHead, make_batch, objective, tiny_supernet_config


def _setup(strategy: str, seed: int = 0, **changes):
    torch.manual_seed(seed)
    supernet = Supernet(tiny_supernet_config(strategy, **changes))
    head = TinyHead()
    return supernet, head, make_weight_optimizer(supernet, head), make_arch_optimizer(supernet)


def _snapshot(params):
    return [p.detach().clone() for p in params]


def _identical(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_registry_lists_the_strategies():
    assert STRATEGIES.names() == ["proxyless", "darts", "spos", "fair"]
    with pytest.raises(ConfigError, match="known strategies: proxyless, darts, spos, fair"):
        load_config(SupernetConfig, {"net": {"vocab_size": 10}, "strategy": "enas"})


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_alpha_moves_only_in_arch_steps_and_weights_only_in_weight_steps(strategy):
    supernet, head, w_opt, a_opt = _setup(strategy)
    weights = list(supernet.weight_parameters()) + list(head.parameters())
    for step in range(4):
        alpha_before = _snapshot(supernet.arch_parameters())
        w_before = _snapshot(weights)
        logs = weight_step(supernet, head, objective, make_batch(seed=step), w_opt, clip=1.0)
        assert torch.isfinite(torch.tensor(logs["loss"])) and "grad_norm" in logs and "score_loss" in logs
        assert _identical(alpha_before, supernet.arch_parameters())
        assert not _identical(w_before, weights)
        assert all(a.grad is None for a in supernet.arch_parameters())

        grads_before = [None if p.grad is None else p.grad.clone() for p in weights]
        w_before = _snapshot(weights)
        alpha_before = _snapshot(supernet.arch_parameters())
        arch_step(supernet, head, objective, make_batch(seed=100 + step), a_opt)
        assert _identical(w_before, weights)  # the architecture step never changes network weights
        for p, g in zip(weights, grads_before):  # ... nor their gradients (no weight backward)
            assert (p.grad is None and g is None) or torch.equal(p.grad, g)
        if strategy not in ("spos", "fair") or step >= 2:  # spos and fair seed their loss statistics in two steps
            assert not _identical(alpha_before, supernet.arch_parameters())


@pytest.mark.parametrize("strategy", ["proxyless", "spos"])
def test_unsampled_ops_are_untouched_by_weight_steps(strategy):
    """Even with Adam state from earlier steps, ops outside the sampled path keep their exact weights."""
    supernet, head, w_opt, _ = _setup(strategy, alpha_init="uniform")
    for step in range(3):  # build up Adam moments on many candidates
        weight_step(supernet, head, objective, make_batch(seed=step), w_opt)
    for step in range(3, 6):
        before = {n: p.detach().clone() for n, p in supernet.named_parameters()}
        weight_step(supernet, head, objective, make_batch(seed=step), w_opt)
        for chain in (supernet.encoder, supernet.decoder):
            for block in chain:
                trained = [name for name, op in block.ops.items() if any(p.grad is not None for p in op.parameters())]
                assert len(trained) == 1  # exactly one path per block ran
        for name, p in supernet.named_parameters():
            if p.grad is None:
                assert torch.equal(before[name], p), name
            elif "alpha" not in name:
                assert not torch.equal(before[name], p), name


def test_darts_weight_step_trains_every_candidate():
    supernet, head, w_opt, _ = _setup("darts")
    weight_step(supernet, head, objective, make_batch(), w_opt)
    for chain in (supernet.encoder, supernet.decoder):
        for block in chain:
            assert all(p.grad is not None for p in block.parameters())


def test_proxyless_warmup_sampling():
    """With a near-certain prior, alpha sampling always follows it; uniform warm-up explores."""
    for mode, expect_exploration in (("alpha", False), ("uniform", True)):
        supernet, head, w_opt, _ = _setup("proxyless", prior_strength=20.0, warmup_sampling=mode)
        prior = supernet.argmax_plan()
        explored = False
        for step in range(6):
            plan = supernet.strategy.weight_plan(supernet, warmup=True)
            explored |= plan.enc.index != prior.enc.index or plan.dec.index != prior.dec.index
        assert explored == expect_exploration
        # Outside warm-up both follow alpha.
        plan = supernet.strategy.weight_plan(supernet, warmup=False)
        assert plan.dec.index == prior.dec.index


def _gated_loss(supernet, head, batch, index, gates):
    plan = PathPlan(ChainPlan("gated", index["enc"], gates["enc"]), ChainPlan("gated", index["dec"], gates["dec"]))
    loss, _ = objective(supernet(batch, head, plan), batch)
    return loss


def test_binary_connect_gradient_matches_finite_differences_and_the_formula():
    torch.manual_seed(0)
    supernet = Supernet(tiny_supernet_config("proxyless", alpha_init="uniform")).double()
    head = TinyHead().double()
    with torch.no_grad():  # a non-uniform distribution to make the formula non-trivial
        for alpha in supernet.arch_parameters():
            alpha.normal_(0.0, 1.0)
    batch = make_batch(seed=3)
    batch.region_feats = batch.region_feats.double()
    batch.region_boxes = batch.region_boxes.double()
    batch.targets = {k: v.double() for k, v in batch.targets.items()}

    # The arch step (SGD lr=1: the update equals minus the gradient it applied).
    sgd = torch.optim.SGD(supernet.arch_parameters(), lr=1.0)
    alpha_before = {"enc": supernet.enc_alpha.detach().clone(), "dec": supernet.dec_alpha.detach().clone()}
    rng_state = supernet.strategy.generator.get_state()
    arch_step(supernet, head, objective, batch, sgd)
    applied = {"enc": alpha_before["enc"] - supernet.enc_alpha.detach(), "dec": alpha_before["dec"] - supernet.dec_alpha.detach()}

    # Replay the same path draw.
    supernet.strategy.generator.set_state(rng_state)
    index = {c: supernet.strategy.sample(torch.softmax(alpha_before[c], -1)) for c in ("enc", "dec")}
    with torch.no_grad():
        supernet.enc_alpha.copy_(alpha_before["enc"])
        supernet.dec_alpha.copy_(alpha_before["dec"])

    def gates_for(chain, k):
        g = torch.zeros(len(index[chain]), k, dtype=torch.float64)
        g[torch.arange(len(index[chain])), torch.tensor(index[chain])] = 1.0
        return g

    base = {c: gates_for(c, a.shape[1]) for c, a in alpha_before.items()}
    eps = 1e-6
    for chain in ("enc", "dec"):
        fd = torch.zeros_like(base[chain])
        for b in range(base[chain].shape[0]):
            for j in range(base[chain].shape[1]):
                plus = {c: g.clone() for c, g in base.items()}
                minus = {c: g.clone() for c, g in base.items()}
                plus[chain][b, j] += eps
                minus[chain][b, j] -= eps
                with torch.no_grad():
                    fd[b, j] = (_gated_loss(supernet, head, batch, index, plus) - _gated_loss(supernet, head, batch, index, minus)) / (2 * eps)
        # dL/dg_j = <dL/dout, o_j> by finite differences, through softmax's Jacobian by autograd:
        alpha = alpha_before[chain].clone().requires_grad_(True)
        (expected,) = torch.autograd.grad((torch.softmax(alpha, -1) * fd).sum(), alpha)
        torch.testing.assert_close(applied[chain], expected, atol=1e-6, rtol=1e-5)
        # ... and the explicit BinaryConnect sum_j dL/dg_j p_j (delta_ij - p_i):
        p = torch.softmax(alpha_before[chain], -1)
        explicit = torch.stack(
            [torch.stack([sum(fd[b, j] * p[b, j] * (float(i == j) - p[b, i]) for j in range(p.shape[1])) for i in range(p.shape[1])]) for b in range(p.shape[0])]
        )
        torch.testing.assert_close(binary_connect_grad(alpha_before[chain], fd), explicit)
        assert fd.abs().max() > 0


def test_darts_arch_gradient_matches_finite_differences():
    torch.manual_seed(0)
    supernet = Supernet(tiny_supernet_config("darts", enc_depth=1, dec_depth=2)).double()
    head = TinyHead().double()
    batch = make_batch(seed=4)
    batch.region_feats = batch.region_feats.double()
    batch.region_boxes = batch.region_boxes.double()
    batch.targets = {k: v.double() for k, v in batch.targets.items()}
    before = _snapshot(supernet.arch_parameters())
    arch_step(supernet, head, objective, batch, torch.optim.SGD(supernet.arch_parameters(), lr=1.0))
    applied = [b - a.detach() for b, a in zip(before, supernet.arch_parameters())]
    with torch.no_grad():
        for a, b in zip(supernet.arch_parameters(), before):
            a.copy_(b)
        eps = 1e-6
        for alpha, grad in zip(supernet.arch_parameters(), applied):
            b, j = 0, 1
            alpha[b, j] += eps
            up = objective(supernet(batch, head, supernet.strategy.weight_plan(supernet, False)), batch)[0]
            alpha[b, j] -= 2 * eps
            down = objective(supernet(batch, head, supernet.strategy.weight_plan(supernet, False)), batch)[0]
            alpha[b, j] += eps
            assert float(grad[b, j]) == pytest.approx(float((up - down) / (2 * eps)), rel=1e-5, abs=1e-8)


def test_spos_record_moves_only_the_sampled_candidates():
    supernet, head, _, _ = _setup("spos", alpha_init="uniform")
    for step in range(2):  # seed the loss statistics
        arch_step(supernet, head, objective, make_batch(seed=step), None)
    assert all(torch.equal(a, torch.zeros_like(a)) for a in supernet.arch_parameters())
    m = supernet.config.spos_momentum
    for step in range(2, 6):
        before = _snapshot(supernet.arch_parameters())
        logs = arch_step(supernet, head, objective, make_batch(seed=step), None)
        z = logs["loss_z"]
        assert z != 0.0
        for old, new in zip(before, supernet.arch_parameters()):
            changed = old != new
            assert (changed.sum(-1) == 1).all()  # one sampled candidate per block moved
            torch.testing.assert_close(new[changed], ((1 - m) * old - m * z)[changed])


def test_arch_optimizer_must_hold_only_alphas():
    supernet, head, w_opt, _ = _setup("proxyless")
    with pytest.raises(ValueError, match="only the supernet's architecture weights"):
        arch_step(supernet, head, objective, make_batch(), w_opt)


@pytest.mark.parametrize("enc_depth,dec_depth", [(3, 5), (5, 7), (1, 2)])
def test_mcan_prior_alpha_init_for_odd_depths(enc_depth, dec_depth):
    config = tiny_supernet_config(enc_depth=enc_depth, dec_depth=dec_depth)
    enc, dec = initial_alphas(config)
    pools = config.pools
    assert [pools["enc"][i] for i in enc.argmax(-1)] == [("self_att", "feed_forward")[i % 2] for i in range(enc_depth)]
    assert [pools["dec"][i] for i in dec.argmax(-1)] == [("rel_self_att", "guided_att", "feed_forward")[i % 3] for i in range(dec_depth)]
    assert set(enc.unique().tolist()) == {-1.0, 1.0} and set(dec.unique().tolist()) == {-1.0, 1.0}
    assert (dec == 1.0).sum() == dec_depth
    # MMnas's prior probabilities: ~0.88 (2 ops) and ~0.71 (4 ops) for the prior op.
    assert torch.softmax(enc, -1).max(-1).values[0] == pytest.approx(0.881, abs=1e-3)
    assert torch.softmax(dec, -1).max(-1).values[0] == pytest.approx(0.711, abs=1e-3)
    uniform = initial_alphas(tiny_supernet_config(enc_depth=enc_depth, dec_depth=dec_depth, alpha_init="uniform"))
    assert all((a == 0).all() for a in uniform)
    with pytest.raises(ValueError, match="alpha_init='uniform'"):
        initial_alphas(tiny_supernet_config(dec_pool=("self_att", "guided_att", "feed_forward")))


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_state_dict_resumes_path_sampling_exactly(strategy):
    supernet, head, w_opt, a_opt = _setup(strategy)
    for step in range(3):
        weight_step(supernet, head, objective, make_batch(seed=step), w_opt)
        arch_step(supernet, head, objective, make_batch(seed=50 + step), a_opt)
    buffer = io.BytesIO()
    torch.save(supernet.state_dict(), buffer)  # what a checkpoint does; loadable with weights_only
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert "strategy._extra_state" in state

    resumed = Supernet(tiny_supernet_config(strategy))
    resumed.load_state_dict(state)
    for _ in range(3):
        a = supernet.strategy.weight_plan(supernet, warmup=False)
        b = resumed.strategy.weight_plan(resumed, warmup=False)
        assert a.enc.index == b.enc.index and a.dec.index == b.dec.index
    if strategy in ("spos", "fair"):
        assert resumed.strategy.count == supernet.strategy.count == 3
        assert resumed.strategy.loss_mean == supernet.strategy.loss_mean


def test_different_seeds_sample_different_paths():
    plans = []
    for seed in (0, 1):
        supernet = Supernet(tiny_supernet_config("spos", enc_depth=6, dec_depth=8, seed=seed))
        plans.append([supernet.strategy.weight_plan(supernet, False).dec.index for _ in range(3)])
    assert plans[0] != plans[1]



def test_fair_weight_step_trains_every_candidate_equally_and_sums_their_gradients():
    """FairNAS: one step = 4 paths (the decoder pool's size) covering each decoder candidate once
    per block and each encoder candidate twice; the update is the sum of the 4 paths' gradients."""
    supernet, head, _, _ = _setup("fair", enc_depth=2, dec_depth=3)
    plans = supernet.strategy.weight_plans(supernet, warmup=False)
    assert len(plans) == 4
    for block in range(3):
        assert sorted(p.dec.index[block] for p in plans) == [0, 1, 2, 3]
    for block in range(2):
        assert sorted(p.enc.index[block] for p in plans) == [0, 0, 1, 1]
    assert [p.dec.index for p in plans] != [p.dec.index for p in supernet.strategy.weight_plans(supernet, False)]  # redrawn

    # the gradients of one fair step equal the sum over its paths, each computed on its own
    batch = make_batch(seed=5)
    weights = list(supernet.weight_parameters()) + list(head.parameters())
    generator_state = supernet.strategy.generator.get_state()
    expected = [torch.zeros_like(w) for w in weights]
    for plan in supernet.strategy.weight_plans(supernet, warmup=False):
        for w in weights:
            w.grad = None
        objective(supernet(batch, head, plan), batch)[0].backward()
        for total, w in zip(expected, weights):
            if w.grad is not None:
                total += w.grad
    supernet.strategy.generator.set_state(generator_state)  # the same 4 paths again
    optimizer = torch.optim.SGD(weights, lr=0.0)  # lr 0: the step leaves the gradients to compare
    weight_step(supernet, head, objective, batch, optimizer, clip=None)
    for total, w in zip(expected, weights):
        assert torch.allclose(w.grad if w.grad is not None else torch.zeros_like(w), total, atol=1e-6)
