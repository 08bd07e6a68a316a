"""Sign circuits on tiny networks whose every number is computed by hand."""

from __future__ import annotations

import json
import math

import networkx as nx
import pytest
import torch
from torch import nn

from probe.report.circuit_figure import draw_circuit
from probe.circuit import (CircuitError, smallest_cover, summarize_for_compare, trace_circuit,
                           top_paths, write_graphml)
from probe.core.data import Dataset
from probe.diagnostics.sign import SignRoutes
from probe.core.errors import ProbeError
from probe.models.mlp import MLP

# f(x) = act(x0) - act(x1): identity first layer, output weights [1, -1], no biases.
X_HAND = torch.tensor([[2.0, 1.0], [1.0, 3.0], [-1.0, 2.0], [3.0, -1.0]])
# predictions (ReLU): 1, -2, -2, 3 -> negative group = samples 1, 2; positive = 0, 3


def hand_net(act: nn.Module) -> MLP:
    first, last = nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.eye(2))
        last.weight.copy_(torch.tensor([[1.0, -1.0]]))
    return MLP(first, act, last)


def run(mlp: MLP, X: torch.Tensor = X_HAND, **kwargs):
    kwargs.setdefault("baseline", "zeros")
    return trace_circuit(mlp, Dataset(X, None, "hand"), **kwargs)


def test_relu_groups_activations_attributions_by_hand():
    r = run(hand_net(nn.ReLU()))
    neg, pos = r.groups
    assert (neg.samples, pos.samples) == (2, 2)
    assert neg.mean_prediction == pytest.approx(-2.0) and pos.mean_prediction == pytest.approx(2.0)
    inputs, hidden, out = neg.layers
    assert inputs.mean_activation == pytest.approx((0.0, 2.5))
    assert inputs.active_fraction == pytest.approx((0.5, 1.0))
    assert hidden.mean_activation == pytest.approx((0.5, 2.5))  # relu([1,3]) and relu([-1,2])
    assert hidden.active_fraction == pytest.approx((0.5, 1.0))
    # From a zero baseline no ray crosses a kink, so IG is exact: A = [h0, -h1].
    assert hidden.mean_attribution == pytest.approx((0.5, -2.5), abs=1e-6)
    assert inputs.mean_attribution == pytest.approx((0.5, -2.5), abs=1e-6)  # x0 = -1 is cut by the ReLU
    assert out.mean_attribution == pytest.approx((-2.0,))
    assert pos.layers[1].mean_attribution == pytest.approx((2.5, -0.5), abs=1e-6)
    assert r.completeness.max_rel_error < 1e-6
    # d_neg = [0, 2.5], d_pos = [2.5, 0] -> selectivity [+1, -1]
    assert r.selectivity[1] == pytest.approx((1.0, -1.0))
    assert [(d.layer, d.unit, d.mean_attribution) for d in r.drivers_negative] == [(1, 1, pytest.approx(-2.5))]
    assert [(d.layer, d.unit) for d in r.drivers_positive] == [(1, 0)]


def test_circuit_sizes_by_hand():
    # |attribution| means: negative group [0.5, 2.5] (unit 1 holds 5/6), positive [2.5, 0.5].
    r90 = run(hand_net(nn.ReLU()))
    assert [lay.circuit_units for lay in r90.groups[0].layers] == [(1, 0), (1, 0), (0,)]
    assert r90.groups[0].circuit_size == 2
    r80 = run(hand_net(nn.ReLU()), coverage=0.8)
    assert r80.groups[0].layers[1].circuit_units == (1,)
    assert r80.groups[1].layers[1].circuit_units == (0,)
    assert r80.groups[0].circuit_size == 1 and r80.groups[0].circuit_fraction == 0.5
    assert smallest_cover(torch.tensor([1.0, 3.0, 0.0, 6.0]).numpy(), 0.9) == (3, 1)
    assert smallest_cover(torch.tensor([1.0, 3.0, 0.0, 6.0]).numpy(), 0.6) == (3,)
    assert smallest_cover(torch.zeros(3).numpy(), 0.9) == ()


def test_edges_routes_and_paths_by_hand():
    r = run(hand_net(nn.ReLU()))
    g = r.graph("negative")
    assert g.number_of_nodes() == 5 and g.number_of_edges() == 2 * 2 + 2
    assert g.edges["0:1", "1:1"]["weight"] == pytest.approx(2.5)  # W = 1 times mean x1 = 2.5
    assert g.edges["0:0", "1:0"]["weight"] == pytest.approx(0.0)  # mean x0 = (1 - 1) / 2
    assert g.edges["0:0", "1:1"]["weight"] == 0.0  # W = 0
    assert g.edges["1:0", "2:0"]["weight"] == pytest.approx(0.5)
    assert g.edges["1:1", "2:0"]["weight"] == pytest.approx(-2.5)
    assert g.nodes["1:1"]["layer"] == 1 and g.nodes["1:1"]["unit"] == 1
    into_hidden, into_out = r.groups[0].routes
    # Inputs: x = [1, 3] and [-1, 2]; x0 = -1 meets W = 1 -> 1 unit of mass down via a negative input.
    m = into_hidden.masses
    assert (m.pos_pos, m.neg_pos, m.pos_neg, m.neg_neg) == pytest.approx((6.0, 0.0, 1.0, 0.0))
    # ... reported as a negative-input route, never as a negative-activation one.
    assert into_hidden.sender == "inputs" and into_hidden.activation_route_share is None
    assert into_hidden.negative_input_share == pytest.approx(1.0) and into_hidden.cancellation == pytest.approx(1.0)
    row = into_hidden.to_dict()
    assert row["negative_input_share"] == pytest.approx(1.0) and "activation_route_share" not in row
    assert row["downward_shares"] == {"negative_weights": 0.0, "negative_inputs": pytest.approx(1.0), "bias": 0.0}
    m = into_out.masses
    assert (m.pos_pos, m.neg_pos, m.pos_neg, m.neg_neg) == pytest.approx((1.0, 5.0, 0.0, 0.0))
    assert into_out.activation_route_share == 0.0 and into_out.sender == "hidden"
    assert into_out.cancellation == pytest.approx(6.0 / 4.0)  # |f| = 2 + 2
    # Only x1 -> h1 -> y carries mass: share 1 into h1, then 2.5 / (0.5 + 2.5) into y; sign + then -.
    (path,) = r.groups[0].paths
    assert path.units == (1, 1, 0) and path.strength == pytest.approx(5 / 6) and path.sign == -1


def test_leaky_negative_activation_route_by_hand():
    r = run(hand_net(nn.LeakyReLU(0.5)))
    neg = r.groups[0]
    assert neg.layers[1].mean_activation == pytest.approx((0.25, 2.5))  # (1 + -0.5) / 2
    m = neg.routes[-1].masses
    # h0 = -0.5 in sample 2 meets W = +1: 0.5 down through a negative activation; 5 through W = -1.
    assert (m.pos_pos, m.neg_pos, m.pos_neg, m.neg_neg) == pytest.approx((1.0, 5.0, 0.5, 0.0))
    assert neg.routes[-1].activation_route_share == pytest.approx(0.5 / 5.5)
    assert neg.routes[-1].cancellation == pytest.approx(6.5 / 4.5)  # predictions -2 and -2.5
    assert r.completeness.max_rel_error < 1e-6
    s = summarize_for_compare(r)
    assert s["activation_route_share_output"] == pytest.approx(1 / 11)
    assert s["circuit_size_negative"] == 2 and s["negative_samples"] == 2


def random_net(variant: str, widths=(3, 6, 5, 2), seed: int = 0) -> tuple[MLP, Dataset]:
    torch.manual_seed(seed)
    mlp = MLP.build(list(widths), variant)
    return mlp, Dataset(torch.randn(97, widths[0]), None, "random")


@pytest.mark.parametrize("variant", ["relu", "leaky:0.1"])
def test_last_layer_routes_agree_with_sign_diagnostic(variant):
    mlp, data = random_net(variant, widths=(3, 16, 12, 2))  # seed 0: 22 (relu) / 30 (leaky) negatives
    r = trace_circuit(mlp, data, output=1, method="deeplift")
    with torch.no_grad():
        h = mlp[:-1](data.X)
    final = mlp.linears[-1]
    routes = SignRoutes(final.weight[None], final.bias[None])
    routes.update(h[None])
    expected = routes.result(0)[1].negative_predictions
    got = r.groups[0].routes[-1].masses
    assert got.samples == expected.samples == r.groups[0].samples > 0
    assert got.neg_pos > 0 and (got.pos_neg > 0) == (variant != "relu")
    for name in ("pos_pos", "neg_pos", "pos_neg", "neg_neg", "activation_route_share", "cancellation"):
        assert getattr(got, name) == pytest.approx(getattr(expected, name), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("variant", ["relu", "leaky:0.1", "prelu"])
def test_completeness_on_small_networks(variant):
    # The hand networks are kink-free along every path: integrated gradients is exact there.
    act = {"relu": nn.ReLU(), "leaky:0.1": nn.LeakyReLU(0.1), "prelu": nn.PReLU(init=0.3)}[variant]
    assert run(hand_net(act), n_steps=8).completeness.max_rel_error < 1e-6
    # On random networks kinks make IG converge like 1/n_steps; DeepLift is exact by construction.
    mlp, data = random_net(variant, widths=(3, 16, 12, 2))
    coarse = trace_circuit(mlp, data, method="ig", n_steps=16).completeness.max_rel_error
    fine = trace_circuit(mlp, data, method="ig", n_steps=128).completeness.max_rel_error
    assert fine < coarse / 3
    auto = trace_circuit(mlp, data)  # the default: DeepLift where captum supports it, else IG
    assert auto.method == ("ig" if variant == "prelu" else "deeplift")
    if variant != "prelu":
        assert auto.completeness.max_rel_error < 1e-5
    else:
        with pytest.raises(CircuitError, match="PReLU"):
            trace_circuit(mlp, data, method="deeplift")


def test_streaming_does_not_depend_on_batch_size():
    mlp, data = random_net("leaky:0.1", seed=2)
    whole = trace_circuit(mlp, data, method="deeplift", batch_size=1000).to_dict()
    parts = trace_circuit(mlp, data, method="deeplift", batch_size=7).to_dict()
    assert json.dumps(whole["groups"]["negative"]["circuit_size"]) == json.dumps(parts["groups"]["negative"]["circuit_size"])
    for a, b in zip(whole["groups"]["positive"]["layers"], parts["groups"]["positive"]["layers"]):
        assert a["mean_attribution"] == pytest.approx(b["mean_attribution"], abs=1e-6)
        assert a["mean_activation"] == pytest.approx(b["mean_activation"], abs=1e-6)


def test_top_paths_match_networkx_enumeration():
    torch.manual_seed(3)
    contribs = [torch.randn(4, 3).numpy(), torch.randn(4, 4).numpy(), torch.randn(2, 4).numpy()]
    found = top_paths(contribs, output=1, k=5)
    from probe.circuit.paths import edge_shares
    shares = [edge_shares(c) for c in contribs]
    g = nx.DiGraph()
    for li, s in enumerate(shares):
        for k in range(s.shape[0]):
            for j in range(s.shape[1]):
                g.add_edge((li, j), (li + 1, k), share=s[k, j])
    every = []
    for j in range(3):
        for p in nx.all_simple_paths(g, (0, j), (3, 1)):
            every.append(math.prod(g.edges[a, b]["share"] for a, b in zip(p, p[1:])))
    every.sort(reverse=True)
    assert [p.strength for p in found] == pytest.approx(every[:5])
    assert sum(every) == pytest.approx(1.0)  # strengths are a normalised flow


def test_graphml_round_trip(tmp_path):
    r = run(hand_net(nn.LeakyReLU(0.5)))
    path = write_graphml(r, tmp_path / "c.graphml", group="negative")
    back = nx.read_graphml(path)
    original = r.graph("negative")
    assert set(back.nodes) == set(original.nodes) and set(back.edges) == set(original.edges)
    for node, attrs in original.nodes(data=True):
        for key, value in attrs.items():
            assert back.nodes[node][key] == pytest.approx(value) if isinstance(value, float) else back.nodes[node][key] == value
    assert back.nodes["1:0"]["layer"] == 1 and isinstance(back.nodes["1:0"]["unit"], int)
    assert back.edges["1:1", "2:0"]["weight"] == pytest.approx(-2.5)
    assert back.graph["group"] == "negative" and back.graph["output"] == 0
    pos = write_graphml(r.graph("positive"), tmp_path / "p.graphml")
    assert nx.read_graphml(pos).graph["group"] == "positive"


def test_png_and_json(tmp_path):
    mlp, data = random_net("leaky:0.1", widths=(3, 20, 20, 1))
    r = trace_circuit(mlp, data, n_steps=16)
    out = draw_circuit(r, tmp_path / "c.png", top_edges=30)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = json.loads(json.dumps(r.to_dict()))
    assert set(d) >= {"output", "completeness", "selectivity", "drivers", "groups", "baseline"}
    assert set(d["groups"]) == {"negative", "positive"}
    assert set(d["groups"]["negative"]) >= {"circuit_size", "routes", "top_paths", "layers"}


def test_empty_group_is_reported_not_fatal():
    r = run(hand_net(nn.ReLU()), X=torch.tensor([[2.0, 1.0], [3.0, -1.0]]))
    assert r.groups[0].samples == 0 and r.groups[0].paths == () and r.selectivity is None
    assert summarize_for_compare(r)["circuit_size_negative"] is None
    assert r.graph("negative").number_of_nodes() == 5


@pytest.mark.parametrize("output", [1, -1, True, "0"])
def test_bad_output_index(output):
    with pytest.raises(CircuitError) as info:
        run(hand_net(nn.ReLU()), output=output)
    err = info.value
    assert err.expected and err.found and err.fix and "from 0 to 0" in str(err)


def test_non_mlp_models_get_clear_errors():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)) + x)

    data = Dataset(X_HAND, None, "hand")
    with pytest.raises(ProbeError):
        trace_circuit(Residual(), data)
    with pytest.raises(CircuitError, match="PyTorch MLP"):
        trace_circuit(42, data)
    with pytest.raises(ProbeError, match="does not exist"):  # a path is loaded like any model file
        trace_circuit("no-such-model.pt", data)
    with pytest.raises(CircuitError, match="no hidden layer"):
        trace_circuit(nn.Sequential(nn.Linear(2, 1)), data)
    with pytest.raises(CircuitError, match="group"):
        run(hand_net(nn.ReLU())).graph("neg")


def test_user_model_is_untouched_even_when_it_raises():
    mlp = hand_net(nn.ReLU(inplace=True))
    mlp.train()
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    run(mlp)
    with pytest.raises(ProbeError):
        trace_circuit(mlp, Dataset(torch.randn(4, 3), None, "wrong width"))
    with pytest.raises(CircuitError):
        run(mlp, output=3)
    assert mlp.training
    for module in mlp.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
    for k, v in mlp.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in mlp.parameters())


def test_partial_top_k_equals_the_full_stable_sort():
    import numpy as np

    from probe.circuit.paths import _top_k_stable

    rng = np.random.default_rng(0)
    for _ in range(100):
        flat = rng.integers(0, 5, size=(7, 80)).astype(float)  # many ties
        flat[rng.random(flat.shape) < 0.3] = -np.inf
        for k in (1, 3, 10):
            assert (_top_k_stable(flat, k) == np.argsort(-flat, axis=1, kind="stable")[:, :k]).all()
