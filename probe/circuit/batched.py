"""The sign circuits of many same-shaped ReLU-family MLPs at once (compare's trained members).

:func:`trace_circuits` returns what ``[trace_circuit(m, data, ...) for m in
models]`` returns, with the forward pass and the closed-form DeepLift
(:mod:`probe.circuit.deeplift`) of every model computed together: the models'
weights are stacked ``[models, out, in]`` and every layer is one
``torch.baddbmm``, each model with its own negative slope. The per-model
remainder (the sums, the layer circuits, routes and paths) is
:func:`probe.circuit.core.feed` and :func:`~probe.circuit.core.finish`, shared
with :func:`~probe.circuit.core.trace_circuit`. The rule is the same closed form
(``r = dh / dz`` where ``|dz| >= 1e-10``, else the derivative; ``D_{l-1} =
(D_l * r_l) W_l``), so the attributions equal the one-model path's up to float
rounding of the batched products; ``tests/test_circuit_deeplift.py`` checks them
against captum's DeepLift to 1e-5 for every ReLU-family variant.

Models are stacked in groups whose tensors stay in cache (:data:`GROUP_BYTES`),
and traced one at a time instead when they cannot be stacked: a method
other than the closed form (a smooth activation, a norm, PReLU, ``ig``),
different widths, or different sample sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from probe.circuit.accumulate import CircuitSums
from probe.circuit.core import Setup, feed, finish, prepare, target_change, trace_setup
from probe.circuit.deeplift import backward_attributions, negative_slopes
from probe.circuit.sample import DEFAULT_MAX_SAMPLES
from probe.core.variants import leaky_relu


class BatchedDeepLift:
    """Forward values and DeepLift attributions of ``M`` stacked Linear -> ReLU/LeakyReLU chains.

    Args:
        setups: The models' prepared circuits (same widths, closed-form eligible).
    """

    def __init__(self, setups: Sequence[Setup]) -> None:
        models = [s.model for s in setups]
        self.output = setups[0].output
        slopes = torch.tensor([negative_slopes(m) for m in models], dtype=torch.float32)  # [M, L]
        device = setups[0].base_row.device
        self.slopes = [slopes[:, i].reshape(-1, 1, 1).to(device) for i in range(slopes.shape[1])]
        self.weights = [torch.stack([m.linears[i].weight.detach() for m in models])
                        for i in range(len(models[0].linears))]
        self.biases = [torch.stack([lin.bias.detach() if lin.bias is not None
                                    else torch.zeros(lin.out_features, device=lin.weight.device)
                                    for lin in (m.linears[i] for m in models)])
                       for i in range(len(models[0].linears))]
        with torch.no_grad():
            self.base_z, self.base_h, _ = self.forward(torch.stack([s.base_row for s in setups]))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Pre-activations ``z_1..z_L``, values ``h_0..h_L`` and outputs, each ``[M, rows, units]``."""
        zs, hs = [], [x]
        for w, b, slope in zip(self.weights[:-1], self.biases[:-1], self.slopes):
            z = torch.baddbmm(b.unsqueeze(1), hs[-1], w.transpose(1, 2))
            zs.append(z)
            hs.append(leaky_relu(z, slope))
        out = torch.baddbmm(self.biases[-1].unsqueeze(1), hs[-1], self.weights[-1].transpose(1, 2))
        return zs, hs, out

    @torch.no_grad()
    def attribute(self, zs: list[torch.Tensor], hs: list[torch.Tensor], change: torch.Tensor,
                  runner_up: torch.Tensor | None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Attributions ``[M, rows, units]`` per layer ``0..L`` and completeness errors ``[M, rows]``.

        Args:
            zs, hs: :meth:`forward`'s values for the rows.
            change: The traced quantity's change from the baseline, ``[M, rows]``.
            runner_up: Each row's runner-up class ``[M, rows]`` (margin), or None.
        """
        w_out = self.weights[-1]  # [M, K, U]
        row = w_out[:, self.output]  # [M, U]
        if runner_up is None:
            d = row[:, None, :].expand(-1, hs[-1].shape[1], -1)
        else:  # the effective final row W[K] - W[j*] of each sample
            d = row[:, None, :] - torch.gather(w_out, 1, runner_up[..., None].expand(-1, -1, w_out.shape[2]))
        attrs = backward_attributions(zs, hs, self.base_z, self.base_h, self.slopes, self.weights[:-1], d)
        deltas = [a.double().sum(-1) - change.double() for a in attrs]
        return attrs, deltas


#: bytes of one ``[models, rows, units]`` tensor of a batched group, so that the elementwise steps of the
#: rescale rule run in cache. compare's 20 default members (1,024 rows, 32 units): 4.4-4.8 ms per model
#: in groups of 4 (512 KiB), 5.6 in groups of 8, 6.8 all at once, 5.7 one model at a time
GROUP_BYTES = 2**19


def _trace_group(setups: Sequence[Setup], sums: Sequence[CircuitSums], batch_size: int) -> None:
    """Feed every batch of rows of a group of stackable models into their sums."""
    batched = BatchedDeepLift(setups)
    for start in range(0, setups[0].X.shape[0], batch_size):
        xb = torch.stack([s.X[start:start + batch_size] for s in setups]).to(setups[0].device)
        with torch.no_grad():
            zs, hs, out = batched.forward(xb)
        terms = [target_change(s, out[m]) for m, s in enumerate(setups)]
        change = torch.stack([t[2][:, s.output] for t, s in zip(terms, setups)])
        runner_up = None if terms[0][1] is None else torch.stack([t[1] for t in terms])
        attrs, deltas = batched.attribute(zs, hs, change, runner_up)
        for m, (setup, member_sums) in enumerate(zip(setups, sums)):
            # what forward_layers gives one model: every layer's values and |z - bias| of each Linear
            acts = [h[m] for h in hs] + [out[m]]
            net_abs = [(z[m] - b[m]).abs() for z, b in zip(zs + [out], batched.biases)]
            member = ([a[m] for a in attrs], [d[m] for d in deltas])
            feed(setup, member_sums, xb[m], acts, net_abs, lambda *_, member=member: member, terms[m])


def _stackable(setups: Sequence[Setup]) -> bool:
    """Whether the closed form applies to every model and their shapes and sample sizes agree."""
    first = setups[0]
    return all(s.method == "deeplift" and negative_slopes(s.model) is not None
               and s.model.widths == first.model.widths and s.X.shape == first.X.shape
               and s.device == first.device for s in setups)


def trace_circuits(models: Sequence[object], data: object, *, output: int = 0, baseline: str | torch.Tensor = "mean",
                   method: str = "auto", n_steps: int = 128, batch_size: int = 512, coverage: float = 0.9,
                   n_paths: int = 10, n_drivers: int = 5, max_samples: int | None = DEFAULT_MAX_SAMPLES,
                   target: str = "logit", device: str = "cpu") -> list:
    """:func:`~probe.circuit.core.trace_circuit` of every model, batched where the models allow it.

    Arguments as :func:`~probe.circuit.core.trace_circuit`'s, shared by every
    model. Returns one :class:`~probe.circuit.result.CircuitResult` per model.
    """
    options = dict(output=output, baseline=baseline, method=method, n_steps=n_steps, batch_size=batch_size,
                   coverage=coverage, n_paths=n_paths, n_drivers=n_drivers, max_samples=max_samples,
                   target=target, device=device)
    if not models:
        return []
    setups = [prepare(m, data, **options) for m in models]
    if len(setups) == 1 or not _stackable(setups):
        return [trace_setup(s, batch_size=batch_size, n_steps=n_steps, coverage=coverage, n_paths=n_paths,
                            n_drivers=n_drivers) for s in setups]
    sums = [CircuitSums(s.model.widths, s.output, margin=s.target == "margin") for s in setups]
    rows = min(batch_size, setups[0].X.shape[0])
    size = max(1, GROUP_BYTES // (4 * rows * max(setups[0].model.widths)))
    for lo in range(0, len(setups), size):
        _trace_group(setups[lo:lo + size], sums[lo:lo + size], batch_size)
    return [finish(s, sm, coverage=coverage, n_paths=n_paths, n_drivers=n_drivers, n_steps=n_steps)
            for s, sm in zip(setups, sums)]
