"""The circuit's stratified sample cap, and route rows that tell inputs from activations."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from captum.attr import DeepLift, LayerDeepLift

from probe.circuit import trace_circuit
from probe.circuit.sample import group_quotas, stratified_rows
from probe.core.data import Dataset
from probe.diagnostics.sign import negative_prediction
from probe.models.mlp import MLP


def net_and_data(variant: str = "relu", rows: int = 1000, seed: int = 0) -> tuple[MLP, Dataset]:
    torch.manual_seed(seed)
    mlp = MLP.build([4, 12, 10, 1], variant)
    return mlp, Dataset(torch.randn(rows, 4), None, "random")


def test_group_quotas_keep_proportions_and_rare_groups():
    assert group_quotas([300, 700], 100) == [30, 70]
    assert group_quotas([333, 667], 10) == [3, 7]  # largest remainder: 3.33 / 6.67
    assert group_quotas([1, 999], 10) == [1, 9]  # a rare group keeps one row
    assert group_quotas([0, 50], 10) == [0, 10]
    for counts in ([5, 995], [123, 877], [500, 500], [999, 1]):
        assert sum(group_quotas(counts, 37)) == 37


def test_stratified_rows_are_proportional_deterministic_and_sorted():
    negative = torch.zeros(5000, dtype=torch.bool)
    negative[torch.randperm(5000, generator=torch.Generator().manual_seed(3))[:1250]] = True  # 25%
    rows = stratified_rows(negative, 400)
    assert rows.shape == (400,) and len(set(rows.tolist())) == 400
    assert torch.equal(rows, torch.sort(rows).values)
    assert int(negative[rows].sum()) == 100  # 25% of 400
    assert torch.equal(rows, stratified_rows(negative.clone(), 400))  # same rows on every run
    assert not torch.equal(rows, stratified_rows(negative, 400, seed=1))
    assert stratified_rows(negative, 5000) is None and stratified_rows(negative, None) is None


def test_capped_circuit_reports_its_sample_and_keeps_group_proportions():
    mlp, data = net_and_data()
    with torch.no_grad():
        negative = negative_prediction(mlp(data.X)[:, 0])
    r = trace_circuit(mlp, data, max_samples=200)
    doc = r.to_dict()
    assert doc["samples"] == {"used": 200, "of": 1000, "stratified_by": "prediction sign", "seed": 0}
    expected_neg = group_quotas([int(negative.sum()), int((~negative).sum())], 200)[0]
    assert r.groups[0].samples == expected_neg and r.samples == 200
    assert json.dumps(doc) == json.dumps(trace_circuit(mlp, data, max_samples=200).to_dict())
    assert trace_circuit(mlp, data, max_samples=None).to_dict()["samples"] == {
        "used": 1000, "of": 1000, "stratified_by": None, "seed": 0}


def test_capped_circuit_equals_captum_on_exactly_those_rows():
    mlp, data = net_and_data("leaky:0.1")
    r = trace_circuit(mlp, data, max_samples=150, method="deeplift")
    with torch.no_grad():
        rows = stratified_rows(negative_prediction(mlp(data.X)[:, 0]), 150)
        X = data.X[rows]
        neg = mlp(X)[:, 0] < 0
    base = data.X.mean(0, keepdim=True).expand_as(X)  # the default baseline: the mean of ALL rows
    # Independent: captum's own DeepLift on a fresh copy of the model, on exactly the sampled rows.
    model = MLP.build([4, 12, 10, 1], "leaky:0.1")
    model.load_state_dict(mlp.state_dict())
    model.eval()
    explainers = [DeepLift(model)] + [LayerDeepLift(model, act) for act in model.activations]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        attrs = [e.attribute(X.clone().requires_grad_(True), baselines=base, target=0).detach()
                 for e in explainers]
    for layer, attr in enumerate(attrs):
        for group, mask in ((0, neg), (1, ~neg)):
            got = r.groups[group].layers[layer].mean_attribution
            assert got == pytest.approx(attr[mask].double().mean(0).tolist(), abs=1e-6)
    # And the whole circuit is the one traced directly on those rows with the same baseline.
    direct = trace_circuit(mlp, Dataset(X, None, "rows"), max_samples=None, method="deeplift",
                           baseline=data.X.double().mean(0).float()).to_dict()
    capped = r.to_dict()
    for key in ("groups", "drivers", "selectivity"):
        assert json.dumps(capped[key]) == json.dumps(direct[key])


def test_pure_relu_net_has_no_negative_activation_route_but_reports_negative_inputs():
    mlp, data = net_and_data("relu", rows=400)  # Gaussian inputs: about half are negative
    r = trace_circuit(mlp, data)
    for group in r.groups:
        into_h1, *after = group.routes
        assert into_h1.sender == "inputs" and into_h1.activation_route_share is None
        assert into_h1.masses.pos_neg > 0 and into_h1.negative_input_share > 0.1
        row = into_h1.to_dict()
        assert "negative_inputs" in row["downward_shares"] and "negative_activations" not in row["downward_shares"]
        assert "activation_route_share" not in row and row["sender"] == "inputs"
        for route in after:  # hidden ReLU outputs are >= 0: nothing can go down through them
            assert route.sender == "hidden" and route.masses.pos_neg == 0.0 and route.masses.neg_neg == 0.0
            assert route.activation_route_share == 0.0
            assert route.to_dict()["downward_shares"]["negative_activations"] == 0.0
        assert group.to_dict()["routes_after_inputs"]["activation_route_share"] == 0.0
