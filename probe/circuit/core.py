"""``circuit``: follow the sign of one output back through every layer of an MLP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from probe.circuit.accumulate import NEGATIVE, POSITIVE, CircuitSums, GroupSums, forward_layers
from probe.circuit.attribution import Attributor
from probe.circuit.paths import top_paths
from probe.circuit.result import (CircuitResult, Completeness, Driver, GroupCircuit, LayerCircuit, _floats,
                                  contributions)
from probe.circuit.routes import layer_routes
from probe.circuit.sample import DEFAULT_MAX_SAMPLES, SampleInfo, stratified_rows
from probe.circuit.target import check_target, target_scores
from probe.core.devices import check_device
from probe.diagnostics.sign import negative_prediction
from probe.models.mlp import MLP
from probe.circuit.validate import (GROUPS, CircuitError, check_circuit_data, check_method, check_output,
                                    check_positive_int, private_mlp, resolve_baseline)


def smallest_cover(importance: np.ndarray, coverage: float) -> tuple[int, ...]:
    """The fewest units whose importances sum to ``coverage`` of the total, largest first.

    Ties go to the lower index; all-zero importance gives the empty set.
    """
    total = float(importance.sum())
    if total <= 0:
        return ()
    order = np.argsort(-importance, kind="stable")
    cum = np.cumsum(importance[order])
    # The relative slack absorbs float rounding when the coverage is met exactly.
    n = int(np.searchsorted(cum, coverage * total * (1 - 1e-12))) + 1
    return tuple(int(u) for u in order[:min(n, len(order))])


def _layers(sums: GroupSums, n_layers: int, output: int, coverage: float) -> tuple[LayerCircuit, ...]:
    layers = []
    for layer in range(n_layers):
        kind = "input" if layer == 0 else "output" if layer == n_layers - 1 else "hidden"
        abs_attr = sums.mean("attr_abs", layer)
        units = (output,) if kind == "output" else smallest_cover(abs_attr, coverage)
        layers.append(LayerCircuit(layer, kind, _floats(sums.mean_activation(layer)),
                                   _floats(sums.mean("active", layer)), _floats(sums.mean("attr", layer)),
                                   _floats(abs_attr), units))
    return tuple(layers)


def _selectivity(neg: GroupSums, pos: GroupSums, n_attributed: int) -> tuple[tuple[float, ...], ...] | None:
    """``(d_pos - d_neg) / (d_pos + d_neg)`` per unit; see :class:`CircuitResult`."""
    if neg.samples == 0 or pos.samples == 0:
        return None
    out = []
    for layer in range(n_attributed):
        d_neg = np.clip(-neg.mean("attr", layer), 0, None)  # push towards negative in the negative group
        d_pos = np.clip(pos.mean("attr", layer), 0, None)  # push towards positive in the positive group
        den = d_neg + d_pos
        out.append(_floats(np.divide(d_pos - d_neg, den, out=np.zeros_like(den), where=den > 0)))
    return tuple(out)


def _drivers(group: GroupCircuit, selectivity, sign: int, n: int) -> tuple[Driver, ...]:
    """Hidden units whose mean attribution has ``sign``, strongest first."""
    found = [(sign * a, lay.layer, u, a) for lay in group.hidden
             for u, a in enumerate(lay.mean_attribution) if sign * a > 0]
    found.sort(key=lambda t: (-t[0], t[1], t[2]))
    return tuple(Driver(layer, u, a, None if selectivity is None else selectivity[layer][u])
                 for _, layer, u, a in found[:n])


def _check_options(batch_size: int, n_steps: int, n_paths: int, n_drivers: int, coverage: float,
                   max_samples: int | None) -> None:
    for name, value in (("batch_size", batch_size), ("n_steps", n_steps), ("n_paths", n_paths)):
        check_positive_int(name, value)
    if max_samples is not None:
        check_positive_int("max_samples", max_samples)
    if isinstance(n_drivers, bool) or not isinstance(n_drivers, int) or n_drivers < 0:
        raise CircuitError("n_drivers must be a non-negative integer", expected="an integer >= 0",
                           found=repr(n_drivers), fix="pass n_drivers=5")
    if not 0 < coverage <= 1:
        raise CircuitError("The circuit coverage must be a share", expected="a number in (0, 1]",
                           found=repr(coverage), fix="pass coverage=0.9")


def _sampled(model: MLP, X: torch.Tensor, output: int, target: str, max_samples: int | None,
             batch_size: int, device: str) -> tuple[torch.Tensor, SampleInfo]:
    """The rows to trace (stratified by the sign of the target) and what the output says about them."""
    n = X.shape[0]
    stratified_by = "prediction sign" if target == "logit" else "margin sign"
    if max_samples is None or n <= max_samples:
        return X, SampleInfo(n, n, None)
    step = max(batch_size, 4096)  # a forward pass only: larger batches are cheaper per row
    with torch.no_grad():
        scores = [target_scores(model(X[s:s + step].to(device)), output, target)[0].cpu()
                  for s in range(0, n, step)]
    rows = stratified_rows(negative_prediction(torch.cat(scores)), max_samples)
    return X[rows], SampleInfo(len(rows), n, stratified_by)


def _output_terms(sums: GroupSums, weight: np.ndarray, output: int) -> tuple[tuple, tuple] | tuple[None, None]:
    """Margin target: the group's mean effective final row and mean effective contribution into K."""
    if sums.runner_counts is None or sums.samples == 0:
        return None, None
    rows = weight[output][None, :] - weight  # [classes, units]: W[K] - W[c]
    counts = sums.runner_counts
    row = (counts[:, None] * rows).sum(0) / counts.sum()
    contribution = (rows * (sums.runner_pos - sums.runner_neg)).sum(0) / sums.samples
    return _floats(row), _floats(contribution)


def trace_circuit(mlp: object, data: object, *, output: int = 0, baseline: str | torch.Tensor = "mean",
                  method: str = "auto", n_steps: int = 128, batch_size: int = 512, coverage: float = 0.9,
                  n_paths: int = 10, n_drivers: int = 5, max_samples: int | None = DEFAULT_MAX_SAMPLES,
                  target: str = "logit", device: str = "cpu",
                  progress: Callable[[int], None] | None = None) -> CircuitResult:
    """The sign circuit of output ``output``: how the network builds negative (and positive) outputs.

    Samples are split by the sign of the traced quantity: the prediction
    ``f_K(x)`` (``target="logit"``) or the logit margin of class K
    (``target="margin"``, :mod:`probe.circuit.target`); ``< 0``: ``negative``,
    else ``positive``. At most ``max_samples`` rows are traced, a seeded sample
    stratified by that sign (:mod:`probe.circuit.sample`; ``result.sample``).
    Per group: per-unit mean activation, active fraction and attribution of the
    target (captum, see :mod:`probe.circuit.attribution`) for the inputs and
    every hidden layer; the 90% circuit per layer; the sign routes layer by
    layer (:mod:`probe.circuit.routes`); the strongest input-to-output paths
    (:mod:`probe.circuit.paths`). Everything is streamed batch by batch:
    memory does not grow with the number of samples.

    Args:
        mlp: A probe MLP, a LoadedModel, a chain-shaped ``nn.Module`` or a model
            file; it is copied, never modified or hooked.
        data: Evaluation inputs: a ``Dataset``, a tensor or numpy array ``X``, or a
            data file (targets are not used).
        output: The output index K (the class, for the margin).
        baseline: Attribution baseline: ``mean`` (the mean of all evaluation
            inputs, default), ``zeros`` or a tensor with one value per feature.
        method: ``auto`` (default: ``deeplift`` for ReLU/leaky models, ``ig`` for
            PReLU), ``ig`` (LayerIntegratedGradients) or ``deeplift`` (LayerDeepLift,
            exact completeness, about 10x faster; not for PReLU).
        n_steps: Integration points for ``ig``. Kinks along the path make the
            completeness error fall like ``1 / n_steps``: on a trained
            8-64-64-64-1 network, 128 steps leave a largest error of about 4%
            of the mean ``|f(x) - f(baseline)|`` (the mean error is ~20x smaller);
            ``result.completeness`` reports what was measured.
        batch_size: Samples per batch (captum runs ``batch_size * n_steps`` rows at once).
        coverage: Share of the absolute attribution the per-layer circuit must carry.
        n_paths: How many top paths to keep per group.
        n_drivers: How many driver units to name per sign.
        max_samples: Trace at most this many evaluation rows (default 2000), or all with None.
        target: ``logit`` (default) or ``margin`` (a classifier's class-K margin).
        device: ``cpu`` or an available ``cuda[:N]`` (:func:`probe.core.devices.check_device`);
            the sums are kept on the CPU in float64.
        progress: Called with the number of samples done after each batch.

    Raises:
        CircuitError: Bad output index, method, baseline, target or parameter; no hidden layer.
        ProbeError: An unknown device, or CUDA without a GPU.
        ModelLoadError: ``mlp`` is a module that is not an MLP.
        DataError: Data of the wrong width or with NaN/inf.
    """
    setup = prepare(mlp, data, output=output, baseline=baseline, method=method, n_steps=n_steps,
                    batch_size=batch_size, coverage=coverage, n_paths=n_paths, n_drivers=n_drivers,
                    max_samples=max_samples, target=target, device=device)
    return trace_setup(setup, batch_size=batch_size, n_steps=n_steps, coverage=coverage, n_paths=n_paths,
                       n_drivers=n_drivers, progress=progress)


def trace_setup(setup: Setup, *, batch_size: int, n_steps: int, coverage: float, n_paths: int, n_drivers: int,
                progress: Callable[[int], None] | None = None) -> CircuitResult:
    """:func:`trace_circuit` of a prepared model: its rows, batch by batch, then the circuit."""
    attributor = Attributor(setup.model, setup.base_row, setup.output, setup.method, n_steps, setup.target)
    sums = CircuitSums(setup.model.widths, setup.output, margin=setup.target == "margin")
    X = setup.X
    for start in range(0, X.shape[0], batch_size):
        xb = X[start:start + batch_size].to(setup.device)
        with torch.no_grad():
            acts, net_abs = forward_layers(setup.model, xb)
        feed(setup, sums, xb, acts, net_abs, attributor)
        if progress is not None:
            progress(min(start + batch_size, X.shape[0]))
    return finish(setup, sums, coverage=coverage, n_paths=n_paths, n_drivers=n_drivers, n_steps=n_steps)


@dataclass
class Setup:
    """One model's circuit, checked and ready to be fed: the private model, the rows, the baseline."""

    model: MLP
    X: torch.Tensor
    sample: SampleInfo
    output: int
    target: str
    method: str
    base_name: str
    base_row: torch.Tensor
    base_out: torch.Tensor
    device: str


def prepare(mlp: object, data: object, *, output: int, baseline: str | torch.Tensor, method: str, n_steps: int,
            batch_size: int, coverage: float, n_paths: int, n_drivers: int, max_samples: int | None,
            target: str, device: str) -> Setup:
    """Every check of :func:`trace_circuit`, the private copy, the baseline and the stratified sample."""
    device = check_device(device)
    model = private_mlp(mlp)
    data = check_circuit_data(data, model)
    output = check_output(output, model.widths[-1])
    target = check_target(target, model.widths[-1])
    method = check_method(method, model)
    _check_options(batch_size, n_steps, n_paths, n_drivers, coverage, max_samples)
    base_name, base_row = resolve_baseline(baseline, data)
    model = model.to(device)
    base_row = base_row.to(device)
    X, sample = _sampled(model, data.X.float(), output, target, max_samples, batch_size, device)
    with torch.no_grad():
        base_out = model(base_row)
    return Setup(model, X, sample, output, target, method, base_name, base_row, base_out, device)


@torch.no_grad()
def target_change(setup: Setup, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``(score, runner_up, change)`` of outputs ``out``: the traced quantity, each row's runner-up
    class (margin only) and every output's change from the baseline, output K's being the score's."""
    output, base_out = setup.output, setup.base_out
    score, runner_up = target_scores(out, output, setup.target)
    # the margin's baseline term is taken against each row's own runner-up (see probe.circuit.target)
    base_score = base_out[0, output] - (0 if runner_up is None else base_out[0, runner_up])
    change = out - base_out
    change[:, output] = score - base_score
    return score, runner_up, change


def feed(setup: Setup, sums: CircuitSums, xb: torch.Tensor, acts: list[torch.Tensor],
         net_abs: list[torch.Tensor], attribute: Callable,
         terms: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor] | None = None) -> None:
    """One batch into ``sums``: the target, its change from the baseline, the attributions.

    Args:
        acts, net_abs: :func:`~probe.circuit.accumulate.forward_layers` of ``xb`` (modified here).
        attribute: ``attribute(xb, change, runner_up) -> (attrs, deltas)``: an
            :class:`~probe.circuit.attribution.Attributor`, or one member of a batched DeepLift.
        terms: :func:`target_change` of ``acts[-1]`` when already computed.
    """
    output = setup.output
    score, runner_up, change = target_change(setup, acts[-1]) if terms is None else terms
    with torch.no_grad():
        if runner_up is not None:  # output K's slot carries the margin, its net the effective row's
            acts[-1] = acts[-1].clone()
            acts[-1][:, output] = score
            net = acts[-2] @ setup.model.linears[-1].weight.T
            net_abs[-1] = net_abs[-1].clone()
            net_abs[-1][:, output] = (net[:, output] - net.gather(1, runner_up[:, None])[:, 0]).abs()
    attrs, deltas = attribute(xb, change[:, output], runner_up)
    cpu = lambda ts: [t.detach().cpu() for t in ts]  # noqa: E731
    sums.update(cpu(acts), cpu(net_abs), cpu(attrs), cpu(deltas), change.cpu(),
                None if runner_up is None else runner_up.cpu())


def finish(setup: Setup, sums: CircuitSums, *, coverage: float, n_paths: int, n_drivers: int,
           n_steps: int) -> CircuitResult:
    """The circuit from the finished sums: layers, routes, paths, drivers, completeness."""
    model, output, target = setup.model, setup.output, setup.target
    n_layers = len(model.widths)
    weights = tuple(lin.weight.detach().double().cpu().numpy().copy() for lin in model.linears)
    biases = [None if lin.bias is None else lin.bias.detach().double().cpu().numpy().copy() for lin in model.linears]
    group_sums = [sums.group(NEGATIVE), sums.group(POSITIVE)]
    groups = []
    for name, gs in zip(GROUPS, group_sums):
        layers = _layers(gs, n_layers, output, coverage)
        row, contribution = _output_terms(gs, weights[-1], output)
        shell = GroupCircuit(name, gs.samples, float(gs.mean_activation(n_layers - 1)[output]), layers, (), (),
                             row, contribution)
        paths = top_paths(contributions(weights, shell), output, n_paths) if gs.samples else ()
        groups.append(GroupCircuit(name, gs.samples, shell.mean_prediction, layers,
                                   layer_routes(list(weights), gs, output, biases), paths, row, contribution))
    selectivity = _selectivity(group_sums[0], group_sums[1], n_layers - 1)
    n = sums.samples
    completeness = Completeness(_floats(sums.delta_max.numpy()), _floats(sums.delta_abs.numpy() / n),
                                sums.change_abs / n)
    base_target = float(target_scores(setup.base_out, output, target)[0][0])
    method = setup.method
    return CircuitResult(
        output=output, method=method, n_steps=n_steps if method == "ig" else None, baseline=setup.base_name,
        baseline_prediction=base_target, samples=n, widths=tuple(model.widths),
        activation=model.activation_spec, coverage=coverage, completeness=completeness,
        selectivity=selectivity,
        drivers_negative=_drivers(groups[0], selectivity, -1, n_drivers),
        drivers_positive=_drivers(groups[1], selectivity, +1, n_drivers),
        groups=(groups[0], groups[1]), weights=weights, target=target, sample=setup.sample)
