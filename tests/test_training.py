"""The ensemble trainer: fairness, equivalence with plain PyTorch, divergence, born-dead statistics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from probe.models.mlp import MLP
from probe.engines.training import Ensemble, TrainConfig, epoch_order, init_digest, init_params, train
from probe.engines.training.convergence import epoch_curve, loss_auc, smoothed, steps_to_target
from probe.engines.training.diagnose import activity_at, member_diagnostics
from probe.core.variants import parse_variant

WIDTHS = [3, 8, 6, 1]
VARIANTS = [parse_variant(s) for s in ("relu", "leaky:0.2", "prelu")]


def toy_data(n: int = 40, f: int = 3):
    g = torch.Generator().manual_seed(7)
    X = torch.randn(n, f, generator=g)
    return X, (X[:, :1] - X[:, 1:2] ** 2 + 0.3).float()


def test_identical_initial_weights_across_variants():
    ens = Ensemble(WIDTHS, VARIANTS, [0, 1, 2], "default")
    s = len(ens.seeds)
    for w in ens.weights + ens.biases:
        for seed_i in range(s):
            for v in range(1, len(VARIANTS)):
                assert torch.equal(w[seed_i], w[v * s + seed_i])
        assert not torch.equal(w[0], w[1])
    assert init_digest(init_params(WIDTHS, "default", 1)) == init_digest(ens.initial[1])
    assert init_digest(ens.initial[0]) != init_digest(ens.initial[1])


def test_init_schemes():
    he = init_params([50, 400, 1], "he_normal", 0)
    assert torch.all(he[0][1] == 0) and float(he[0][0].std()) == pytest.approx((2 / 50) ** 0.5, rel=0.05)
    rai = init_params([5, 1000, 1], "rai", 0)
    v = torch.cat([rai[0][0], rai[0][1][:, None]], 1)  # [units, fan_in + 1]
    # exactly one Beta(2,1) entry per unit: the maximum, positive, mean 2/3
    top = v.max(1).values
    assert float(top.min()) > 0 and float(top.mean()) == pytest.approx(2 / 3, abs=0.05)
    with pytest.raises(ValueError):
        init_params(WIDTHS, "nope", 0)


def plain_losses(ens: Ensemble, m: int, X, y, config: TrainConfig) -> list[float]:
    """Train member m alone as nn.Sequential + torch.optim on the same batches."""
    variant, seed = ens.member(m)
    model: nn.Sequential = MLP.build(WIDTHS, variant)
    with torch.no_grad():
        for lin, (w, b) in zip(model.linears, init_params(WIDTHS, "default", seed)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
    opt = (torch.optim.Adam(model.parameters(), lr=config.lr) if config.optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum))
    losses = []
    for epoch in range(config.epochs):
        order = epoch_order(seed, epoch, X.shape[0])
        xe, ye = X[order], y[order]
        for lo in range(0, X.shape[0], config.batch_size):
            loss = nn.functional.mse_loss(model(xe[lo:lo + config.batch_size]), ye[lo:lo + config.batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("optimizer,lr,momentum", [("adam", 0.01, 0.0), ("sgd", 0.05, 0.9)])
def test_ensemble_matches_plain_pytorch(optimizer, lr, momentum):
    X, y = toy_data()
    config = TrainConfig(optimizer, lr, batch_size=16, epochs=3, momentum=momentum)  # 40/16: a short last batch
    ens = Ensemble(WIDTHS, VARIANTS, [0, 1], "default")
    out = train(ens, X, y, config)
    assert out.step_losses.shape == (9, 6) and out.steps_per_epoch == 3
    for m in range(ens.members):
        expected = torch.tensor(plain_losses(ens, m, X, y, config))
        torch.testing.assert_close(out.step_losses[:, m], expected, rtol=1e-4, atol=1e-6)
    # the PReLU slope moved, the fixed ones did not
    slopes = ens.slopes()[0].detach()
    assert float(slopes[4]) != 0.25 and float(slopes[2]) == pytest.approx(0.2)


def test_member_to_mlp_computes_the_member():
    X, y = toy_data()
    ens = Ensemble(WIDTHS, VARIANTS, [0, 1], "default")
    train(ens, X, y, TrainConfig("adam", 0.01, 16, 2))
    with torch.no_grad():
        out, _, _ = ens.forward(X)
        for m in range(ens.members):
            torch.testing.assert_close(ens.to_mlp(m)(X), out[m])


def test_member_diagnostics_match_analyze():
    from probe.engines.analysis import diagnose
    from probe.core.data import Dataset

    X, y = toy_data()
    ens = Ensemble(WIDTHS, VARIANTS, [0], "default")
    train(ens, X, y, TrainConfig("adam", 0.01, 16, 2))
    diags = member_diagnostics(ens, X, y, batch_size=16)
    for m, d in enumerate(diags):
        ref = diagnose(ens.to_mlp(m), Dataset(X, y, "toy"), batch_size=16).to_dict()
        got = d.to_dict()
        assert got.keys() == ref.keys()
        for lay_got, lay_ref in zip(got["layers"], ref["layers"]):
            assert lay_got.keys() == lay_ref.keys()
            for k, v in lay_ref.items():
                if isinstance(v, float):
                    assert lay_got[k] == pytest.approx(v, rel=1e-4, abs=1e-7), k
                else:
                    assert lay_got[k] == v, k


def test_diverged_member_is_frozen_and_others_carry_on():
    X, y = toy_data()
    config = TrainConfig("adam", 0.01, 16, 3)
    clean = Ensemble(WIDTHS, VARIANTS[:2], [0, 1], "default")
    clean_out = train(clean, X, y, config)
    ens = Ensemble(WIDTHS, VARIANTS[:2], [0, 1], "default")
    with torch.no_grad():
        ens.weights[-1][1].fill_(1e30)  # member 1 (relu, seed 1): squared outputs overflow to inf
    poisoned = [p.detach().clone() for p in ens.parameters()]
    out = train(ens, X, y, config)
    assert out.diverged_epoch == [None, 1, None, None]
    assert torch.isnan(out.step_losses[:, 1]).all() or not torch.isfinite(out.step_losses[:, 1]).all()
    for m in (0, 2, 3):
        torch.testing.assert_close(out.step_losses[:, m], clean_out.step_losses[:, m])
    for p, before in zip(ens.parameters(), poisoned):  # frozen at its last pre-divergence state
        assert torch.equal(p.detach()[1], before[1])


def test_keyboard_interrupt_returns_completed_epochs():
    X, y = toy_data()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if done == 2:
            raise KeyboardInterrupt

    ens = Ensemble(WIDTHS, VARIANTS[:2], [0], "default")
    out = train(ens, X, y, TrainConfig("adam", 0.01, 16, 5), probe=(X, y), progress=progress)
    assert out.interrupted and out.epochs_completed == 2 and seen == [(1, 5), (2, 5)]
    assert out.step_losses.shape[0] == 2 * out.steps_per_epoch
    assert out.dead_rate.shape == (3, 2, 2) and out.grad_ratio.shape == (3, 2, 2)


def test_convergence_measures_by_hand():
    losses = torch.tensor([[4.0], [2.0], [1.0], [0.5], [0.25], [0.25]])
    torch.testing.assert_close(smoothed(losses, 2)[:, 0],
                               torch.tensor([4.0, 3.0, 1.5, 0.75, 0.375, 0.25], dtype=torch.float64))
    assert steps_to_target(losses, 2, 0.75) == [4]
    assert steps_to_target(losses, 2, 0.1) == [None]
    assert loss_auc(losses) == [pytest.approx(8.0 / 6)]
    assert epoch_curve(losses, 2) == [[3.0, 0.75, 0.25]]
    nan_first = torch.tensor([[1.0], [math.nan], [0.0], [0.0]])
    assert steps_to_target(nan_first, 1, 0.5) == [None] and loss_auc(nan_first) == [None]
    assert steps_to_target(torch.zeros(0, 2), 3, 1.0) == [None, None]


def test_born_dead_monte_carlo_he_normal_and_rai():
    """He-normal, zero bias, 1-D signed input, 9 hidden layers of 3 units: P(born dead) ~ 0.58.

    (For one fixed input it would be 1 - (1 - 2^-3)^9 = 0.70; data of both signs
    must be dead on both sides.) With 500 seeds the standard error is ~0.022, so
    +-0.07 is a 3-sigma band. RAI (Lu et al. 2019) must bring it far down.
    """
    seeds = list(range(500))
    X = torch.linspace(-2.0, 2.0, 64).reshape(-1, 1)
    widths = [1] + [3] * 9 + [1]
    relu = [parse_variant("relu")]
    _, he_dead = activity_at(Ensemble(widths, relu, seeds, "he_normal"), X)
    _, rai_dead = activity_at(Ensemble(widths, relu, seeds, "rai"), X)
    p_he, p_rai = float(he_dead.double().mean()), float(rai_dead.double().mean())
    assert p_he == pytest.approx(0.58, abs=0.07)
    assert p_rai < 0.2 and p_rai < p_he / 3


def test_ensemble_copy_to_device_is_independent():
    X, y = toy_data()
    ens = Ensemble(WIDTHS, VARIANTS, [0], "default")
    copy = ens.to("cpu")
    train(ens, X, y, TrainConfig("adam", 0.01, 16, 1))
    assert not torch.equal(copy.weights[0], ens.weights[0])
    assert copy.members == ens.members and len(copy.prelu) == len(ens.prelu)


@pytest.mark.parametrize("kind", ["adam", "sgd", "sgd_momentum"])
def test_probe_optimizers_are_bit_identical_to_torch_optim(kind: str) -> None:
    """probe's Adam/SGD avoid torch.optim's import of torch._dynamo, not its arithmetic."""
    from probe.engines.training.optim import SGD, Adam

    gen = torch.Generator().manual_seed(0)
    # sizes in whole blocks of 64: torch's fused kernel then runs every entry in its vector lanes too
    shapes = [(4, 4, 8), (8, 8), (64, 1, 1)]
    ours = [torch.randn(s, generator=gen).requires_grad_() for s in shapes]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    if kind == "adam":
        opt_a, opt_b = Adam(ours, lr=3e-3), torch.optim.Adam(theirs, lr=3e-3, fused=True)
    else:
        momentum = 0.9 if kind == "sgd_momentum" else 0.0
        opt_a, opt_b = SGD(ours, lr=0.05, momentum=momentum), torch.optim.SGD(theirs, lr=0.05, momentum=momentum)
    for step in range(25):
        grads = [torch.randn(s, generator=gen) * (10.0 ** (step % 5 - 2)) for s in shapes]
        for params, opt in ((ours, opt_a), (theirs, opt_b)):
            opt.zero_grad()
            sum((p * g).sum() for p, g in zip(params, grads)).backward()
            opt.step()
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs)), f"step {step}"


def test_fused_adam_over_the_stack_is_per_member_adam_bit_for_bit() -> None:
    """One optimiser over the stacked members is each member's own Adam, bit for bit.

    torch's fused kernel alone is not: it computes a tensor's last ``numel %
    vector width`` entries in a scalar loop that can round differently. probe's
    Adam hands every entry to the vector path. Members of 7 x 17 = 119 entries
    (not a multiple of any vector width) sit at unaligned offsets here.
    """
    from probe.engines.training.optim import Adam

    gen = torch.Generator().manual_seed(1)
    stacked = torch.randn(6, 7, 17, generator=gen).requires_grad_()
    alone = [stacked[m].detach().clone().requires_grad_() for m in range(6)]
    opt_all, opts = Adam([stacked], lr=1e-2), [Adam([p], lr=1e-2) for p in alone]
    for step in range(10):
        grad = torch.randn(6, 7, 17, generator=gen) * (10.0 ** (step % 4 - 2))
        stacked.grad = grad.clone()
        opt_all.step()
        for m, (p, opt) in enumerate(zip(alone, opts)):
            p.grad = grad[m].clone()
            opt.step()
    assert all(torch.equal(stacked[m], alone[m]) for m in range(6))


@pytest.mark.parametrize("specs, norm, dropout", [
    (("relu", "leaky:0.2", "prelu"), "none", 0.0),
    (("relu", "rrelu", "gelu"), "batch", 0.25),
    (("leaky", "elu"), "layer", 0.1),
])
def test_training_by_seed_chunks_is_training_all_members_at_once(monkeypatch, specs, norm, dropout):
    """Chunks of seeds (the CPU cache strategy) give every member the same bits as one batch.

    One member is poisoned so that divergence handling runs inside a chunk, and
    the per-epoch probe batch and dropout / RReLU noise are on.
    """
    from probe.engines.training import trainer

    X, y = toy_data(n=48)
    config = TrainConfig("adam", 0.01, 16, 3)
    variants = [parse_variant(s) for s in specs]
    outs, ensembles = [], []
    for chunk_bytes in (trainer.CHUNK_BYTES, 1):  # 1 byte: one seed per chunk
        monkeypatch.setattr(trainer, "CHUNK_BYTES", chunk_bytes)
        ens = Ensemble(WIDTHS, variants, [0, 1, 2, 3], "default", norm=norm, dropout=dropout)
        with torch.no_grad():
            ens.weights[-1][5].fill_(1e30)  # the second variant's seed 1: diverges in epoch 1
        assert len(trainer.seed_chunks(ens)) == (1 if chunk_bytes > 1 else 4)
        outs.append(train(ens, X, y, config, probe=(X[:16], y[:16])))
        ensembles.append(ens)
    one, chunked = outs
    assert one.diverged_epoch == chunked.diverged_epoch and one.diverged_epoch[5] == 1

    def named(ens: Ensemble) -> dict[str, torch.Tensor]:
        out = {f"w{i}": w for i, w in enumerate(ens.weights_t)} | {f"b{i}": b for i, b in enumerate(ens.biases)}
        out |= {f"prelu{i}": p for i, p in enumerate(ens.prelu)}
        for i, n in enumerate(ens.norms):
            out |= {f"norm{i}.weight": n.weight, f"norm{i}.bias": n.bias}
            if n.running_mean is not None:
                out |= {f"norm{i}.mean": n.running_mean, f"norm{i}.var": n.running_var}
        return out

    pairs = {"step_losses": (one.step_losses, chunked.step_losses), "dead_rate": (one.dead_rate, chunked.dead_rate),
             "grad_ratio": (one.grad_ratio, chunked.grad_ratio)}
    pairs |= {k: (v, named(ensembles[1])[k]) for k, v in named(ensembles[0]).items()}
    for key, (a, b) in pairs.items():
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=0, equal_nan=True, msg=key)


def test_keyboard_interrupt_rolls_every_chunk_back_to_the_last_epoch_all_completed(monkeypatch):
    """Interrupted inside epoch 3's chunks (after chunk 1 finished it): every member ends at epoch 2."""
    from probe.engines.training import trainer

    X, y = toy_data(n=48)
    config = TrainConfig("adam", 0.01, 16, 5)
    reference = Ensemble(WIDTHS, VARIANTS[:2], [0, 1, 2], "default")
    train(reference, X, y, TrainConfig("adam", 0.01, 16, 2))

    monkeypatch.setattr(trainer, "CHUNK_BYTES", 1)
    ens = Ensemble(WIDTHS, VARIANTS[:2], [0, 1, 2], "default")
    calls = []
    real_epoch = trainer._Run.epoch

    def epoch(self, e, *args):
        calls.append(e)
        if e == 2 and len(calls) == 9:  # chunks 0 and 1 finished epoch 2; chunk 2 is interrupted
            raise KeyboardInterrupt
        return real_epoch(self, e, *args)

    monkeypatch.setattr(trainer._Run, "epoch", epoch)
    out = train(ens, X, y, config, probe=(X[:16], y[:16]))
    assert out.interrupted and out.epochs_completed == 2 and out.dead_rate.shape[0] == 3
    assert out.step_losses.shape == (2 * out.steps_per_epoch, ens.members)
    for a, b in zip(ens.parameters(), reference.parameters()):
        assert torch.equal(a, b)


def test_a_member_does_not_depend_on_the_other_variants_and_seeds_of_its_run():
    """relu seed 1 trains to the same bits beside leaky (3 seeds) as beside leaky:0.1 and gelu (2 seeds)."""
    X, y = toy_data(n=48)
    config = TrainConfig("adam", 0.02, 16, 6)
    a = Ensemble(WIDTHS, [parse_variant("relu"), parse_variant("leaky")], [0, 1, 2], "default")
    b = Ensemble(WIDTHS, [parse_variant(s) for s in ("leaky:0.1", "relu", "gelu")], [1, 2], "default")
    out_a, out_b = train(a, X, y, config), train(b, X, y, config)
    assert torch.equal(out_a.step_losses[:, 1], out_b.step_losses[:, 2])  # relu seed 1 in each
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa[1], pb[2])


def test_seed_chunks_follow_the_parameter_bytes():
    from probe.engines.training.trainer import CHUNK_BYTES, seed_chunks

    small = Ensemble([8, 32, 32, 1], VARIANTS[:2], list(range(10)), "default")
    assert seed_chunks(small) == [(0, 10)]
    wide = Ensemble([8, 1024, 1024, 1], VARIANTS[:1], list(range(12)), "default")
    per_seed = 4 * (8 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 + 1)
    size = CHUNK_BYTES // per_seed
    assert seed_chunks(wide) == [(lo, min(lo + size, 12)) for lo in range(0, 12, size)] and size < 12


def test_adam_without_the_fused_kernel_is_torch_optims_unfused_adam(monkeypatch):
    """On a torch without a fused CPU Adam, probe's Adam falls back to the default single-tensor arithmetic."""
    from probe.engines.training.optim import Adam

    def missing(*args, **kwargs):
        raise NotImplementedError("no fused Adam for this device")

    monkeypatch.setattr(torch, "_fused_adam_", missing)
    gen = torch.Generator().manual_seed(2)
    ours = [torch.randn(4, 3, generator=gen).requires_grad_()]
    theirs = [ours[0].detach().clone().requires_grad_()]
    opt_a, opt_b = Adam(ours, lr=3e-3), torch.optim.Adam(theirs, lr=3e-3, foreach=False)
    for step in range(12):
        grad = torch.randn(4, 3, generator=gen)
        ours[0].grad, theirs[0].grad = grad.clone(), grad.clone()
        opt_a.step()
        opt_b.step()
        assert torch.equal(ours[0], theirs[0]), step
    assert opt_a.fused is False
