"""scikit-learn MLPs (``MLPRegressor``, ``MLPClassifier``) as canonical MLPs.

Their weights are ``coefs_`` (one ``[in, out]`` matrix per layer) and
``intercepts_``; every hidden layer applies ``activation``, the output
``out_activation_``. The files they come in:

- ``.skops`` (``skops.io.dump``): loaded with skops, which builds only the
  types it is told to trust. probe trusts the MLP classes and the optimizer
  state fitted models carry (:data:`TRUSTED_TYPES`), and refuses anything else;
- joblib or pickle files: unpickling runs code, so only with ``trust=True``.

Hidden activations: ``relu`` maps to ReLU, ``tanh`` to probe's ``tanh``;
``identity`` (the whole network is then one linear map) and ``logistic`` are
refused. A classifier's output activation (softmax or logistic) is left out:
probe analyses its logits, and says so in a warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from probe.core.errors import ModelLoadError, ProbeError
from probe.core.variants import parse_variant
from probe.models.convert import assemble, new_linear
from probe.models.guards import check_layer_count, check_tensors, clip, short
from probe.models.mlp import MLP

#: Types a ``.skops`` file of a fitted MLP needs beyond skops' defaults (solver state), and nothing else.
TRUSTED_TYPES = ("sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
                 "sklearn.neural_network._stochastic_optimizers.SGDOptimizer")
MLP_CLASSES = ("MLPRegressor", "MLPClassifier")
#: sklearn's hidden activations and probe's variant specs for them (None: refused, with the reason).
ACTIVATIONS: dict[str, str | None] = {"relu": "relu", "tanh": "tanh", "identity": None, "logistic": None}
_REFUSED = {
    "identity": ("identity hidden layers, which make the whole network a single linear map: there is no "
                 "activation for probe to analyse", "retrain with activation='relu' (or 'tanh')"),
    "logistic": ("logistic (sigmoid) hidden layers: probe's activations are the ReLU family and those with "
                 "a negative region (tanh, ELU, GELU, ...); the sigmoid has none",
                 "retrain with activation='relu' (or 'tanh')"),
}


def is_sklearn(obj: object) -> bool:
    """Whether ``obj`` is an object of a scikit-learn class (checked by module name, nothing imported)."""
    return type(obj).__module__.split(".")[0] == "sklearn"


def joblib_refused(path: Path) -> ModelLoadError:
    return ModelLoadError(
        f"Refusing to load {path}: it is a joblib or pickle file, and unpickling one can run any code it carries",
        expected="a probe checkpoint, a state_dict, safetensors or a .skops file; joblib/pickle only with --trust",
        found="a joblib/pickle file (not written by torch.save)",
        fix="pass --trust only if you trust where the file came from, or save a scikit-learn model with skops: "
            "skops.io.dump(model, 'model.skops')")


def load_joblib(path: Path) -> object:
    """Unpickle a trusted joblib/pickle file (the caller has checked ``trust``).

    Raises:
        ModuleNotFoundError, AttributeError: A pickled class cannot be imported (the caller says how to fix it).
        ModelLoadError: Any other failure: a truncated or corrupt file.
    """
    import joblib

    try:
        return joblib.load(path)
    except (ModuleNotFoundError, AttributeError):
        raise
    except Exception as exc:
        raise ModelLoadError(f"Could not read the joblib/pickle file {path}",
                             expected="a file written by joblib.dump or pickle.dump",
                             found=f"a truncated or corrupt file ({type(exc).__name__}: {clip(str(exc), 120)})",
                             fix="re-save the model, or check that the copy was complete") from None


def load_skops(path: Path) -> object:
    """Load a ``.skops`` file, trusting only :data:`TRUSTED_TYPES` beyond skops' defaults."""
    try:
        import skops.io as sio
    except ImportError:
        raise ModelLoadError(f"{path} is a .skops file, and reading one needs the skops package",
                             expected="skops installed", found="no module named skops",
                             fix="pip install skops (or pip install -e '.[sklearn]' in probe's checkout)") from None
    try:
        untrusted = sio.get_untrusted_types(file=str(path))
    except Exception as exc:
        raise ModelLoadError(f"Could not read the skops file {path}", expected="a file written by skops.io.dump",
                             found=f"a truncated or corrupt file ({type(exc).__name__}: {clip(str(exc), 120)})",
                             fix="re-save the model with skops.io.dump") from None
    unknown = [t for t in untrusted if t not in TRUSTED_TYPES]
    if unknown:
        raise ModelLoadError(
            f"Refusing to load {path}: it holds types probe does not trust",
            expected="a scikit-learn MLPRegressor or MLPClassifier (types " + ", ".join(TRUSTED_TYPES) + ")",
            found="the types " + ", ".join(short(t, 80) for t in unknown[:5]),
            fix="save the fitted MLP on its own with skops.io.dump(model, 'model.skops'), not a pipeline or "
                "custom object")
    try:
        return sio.load(str(path), trusted=list(untrusted))
    except Exception as exc:
        raise ModelLoadError(f"Could not read the skops file {path}", expected="a file written by skops.io.dump",
                             found=f"{type(exc).__name__}: {clip(str(exc), 160)}",
                             fix="re-save the model with skops.io.dump") from None


def _not_mlp(obj: object, found: str, fix: str) -> ModelLoadError:
    return ModelLoadError(f"This scikit-learn {type(obj).__name__} is not an MLP probe can analyse",
                          expected="a fitted MLPRegressor or MLPClassifier with relu or tanh hidden layers",
                          found=found, fix=fix)


def _layers(obj: object) -> list[tuple[np.ndarray, np.ndarray]]:
    coefs, intercepts = getattr(obj, "coefs_", None), getattr(obj, "intercepts_", None)
    if not isinstance(coefs, list) or not isinstance(intercepts, list) or len(coefs) != len(intercepts) \
            or not coefs:
        raise _not_mlp(obj, "no fitted weights (coefs_ and intercepts_)", "fit the model before saving it")
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        if not isinstance(w, np.ndarray) or not isinstance(b, np.ndarray) or w.ndim != 2 \
                or b.shape != (w.shape[1],) or not np.issubdtype(w.dtype, np.floating) \
                or not np.issubdtype(b.dtype, np.floating):
            raise _not_mlp(obj, f"layer {i + 1} weights of shape {getattr(w, 'shape', None)} and intercepts "
                                f"{getattr(b, 'shape', None)}", "re-fit and re-save the model")
    return list(zip(coefs, intercepts))


def sklearn_to_mlp(obj: object, *, max_memory: int | None = None) -> tuple[MLP, str, tuple[str, ...]]:
    """The canonical MLP of a fitted scikit-learn MLP, its class name, and warnings.

    Raises:
        ModelLoadError: Another estimator, unfitted, or an activation probe cannot analyse.
    """
    name = type(obj).__name__
    if name not in MLP_CLASSES or not type(obj).__module__.startswith("sklearn.neural_network"):
        fix = ("save the MLP step on its own (pipeline[-1]) and apply the pipeline's other steps to the data "
               "yourself" if name == "Pipeline" else "probe analyses scikit-learn's MLPRegressor and MLPClassifier")
        raise ModelLoadError(f"This file holds a scikit-learn {name}, not an MLP",
                             expected="an MLPRegressor or MLPClassifier", found=f"a {name}", fix=fix)
    activation = getattr(obj, "activation", None)
    if activation not in ACTIVATIONS:
        raise _not_mlp(obj, f"activation = {short(activation, 40)}", "re-fit the model")
    if activation in _REFUSED:
        found, fix = _REFUSED[activation]
        raise _not_mlp(obj, found, fix)
    layers = _layers(obj)
    check_layer_count(len(layers))
    tensors = [(f"coefs_[{i}]", torch.from_numpy(np.ascontiguousarray(w.T))) for i, (w, _) in enumerate(layers)]
    check_tensors(tensors, f"this {name}", max_memory)
    try:
        variant = parse_variant(ACTIVATIONS[activation])
    except ProbeError:
        raise _not_mlp(obj, f"{activation} hidden layers, which this version of probe cannot analyse",
                       "upgrade probe, or retrain with activation='relu'") from None
    linears = [new_linear(t, torch.from_numpy(np.asarray(b))) for (_, t), (_, b) in zip(tensors, layers)]
    mlp = assemble(linears, [variant.make_module() for _ in linears[:-1]])
    warnings: list[str] = []
    out = getattr(obj, "out_activation_", None)
    if name == "MLPClassifier":
        warnings.append(f"This MLPClassifier's output activation ({out}) is left out: probe analyses its "
                        f"{mlp.widths[-1]} logit{'s' if mlp.widths[-1] > 1 else ''}, the inputs of {out}.")
    elif out not in (None, "identity"):
        warnings.append(f"This MLPRegressor's output activation ({out}) is left out: probe analyses the "
                        "output layer's values before it.")
    return mlp, name, tuple(warnings)
