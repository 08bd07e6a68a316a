"""scikit-learn MLPs from .skops files (trusted types only) and joblib/pickle files (only with trust)."""

from __future__ import annotations

import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from probe.core.errors import ModelLoadError
from probe.models import load_mlp

skops_io = pytest.importorskip("skops.io")


def _fit(model, classes: int = 0):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5))
    y = rng.integers(0, classes, size=80) if classes else X @ rng.normal(size=5) + 0.1 * rng.normal(size=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def _logits(model, X: np.ndarray) -> np.ndarray:
    """The classifier's output layer before softmax/logistic, recomputed with numpy from coefs_."""
    h = X
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_)):
        h = h @ w + b
        if i < len(model.coefs_) - 1:
            h = np.maximum(h, 0) if model.activation == "relu" else np.tanh(h)
    return h


def _outputs(loaded, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return loaded.mlp(torch.from_numpy(X).float()).numpy()


X_TEST = np.random.default_rng(1).normal(size=(50, 5))


def test_regressor_from_skops_matches_predict(tmp_path) -> None:
    model = _fit(MLPRegressor(hidden_layer_sizes=(16, 8), max_iter=200, random_state=0))
    skops_io.dump(model, tmp_path / "m.skops")
    loaded = load_mlp(tmp_path / "m.skops")
    assert loaded.format == "sklearn MLPRegressor (skops)"
    assert loaded.mlp.widths == [5, 16, 8, 1] and loaded.mlp.activation_spec == "relu"
    assert loaded.warnings == ()
    np.testing.assert_allclose(_outputs(loaded, X_TEST)[:, 0], model.predict(X_TEST), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("classes, out", [(3, "softmax"), (2, "logistic")])
def test_classifier_keeps_its_logits(tmp_path, classes, out) -> None:
    model = _fit(MLPClassifier(hidden_layer_sizes=(12,), max_iter=200, random_state=0), classes)
    skops_io.dump(model, tmp_path / "c.skops")
    loaded = load_mlp(tmp_path / "c.skops")
    assert loaded.format == "sklearn MLPClassifier (skops)"
    assert loaded.mlp.widths[-1] == (classes if classes > 2 else 1)
    [warning] = loaded.warnings
    assert out in warning and "logit" in warning
    logits = _logits(model, X_TEST)
    np.testing.assert_allclose(_outputs(loaded, X_TEST), logits, rtol=1e-4, atol=1e-4)
    proba = model.predict_proba(X_TEST)  # the logits are what sklearn turns into probabilities
    if classes > 2:
        soft = np.exp(logits - logits.max(1, keepdims=True))
        np.testing.assert_allclose(soft / soft.sum(1, keepdims=True), proba, atol=1e-5)
    else:
        np.testing.assert_allclose(1 / (1 + np.exp(-logits[:, 0])), proba[:, 1], atol=1e-5)


def test_joblib_needs_trust_and_leaks_no_warning(tmp_path, recwarn) -> None:
    model = _fit(MLPRegressor(hidden_layer_sizes=(6,), max_iter=50, random_state=0))
    joblib.dump(model, tmp_path / "m.joblib")
    joblib.dump(model, tmp_path / "mz.joblib", compress=3)
    with open(tmp_path / "m.pkl", "wb") as f:
        pickle.dump(model, f)
    recwarn.clear()
    for name in ("m.joblib", "mz.joblib", "m.pkl"):
        with pytest.raises(ModelLoadError, match=r"joblib or pickle file.*can run.*--trust.*skops") as info:
            load_mlp(tmp_path / name)
        assert "corrupt" not in str(info.value)
        loaded = load_mlp(tmp_path / name, trust=True)
        assert loaded.format == "sklearn MLPRegressor (joblib)"
        np.testing.assert_allclose(_outputs(loaded, X_TEST)[:, 0], model.predict(X_TEST), rtol=1e-4, atol=1e-4)
    assert [str(w.message) for w in recwarn] == []


@pytest.mark.parametrize("activation, needle", [("identity", "single linear map"), ("logistic", "sigmoid")])
def test_activations_probe_cannot_analyse_are_refused(tmp_path, activation, needle) -> None:
    model = _fit(MLPRegressor(hidden_layer_sizes=(4,), activation=activation, max_iter=30, random_state=0))
    skops_io.dump(model, tmp_path / "m.skops")
    with pytest.raises(ModelLoadError, match=needle):
        load_mlp(tmp_path / "m.skops")


def test_tanh_mlp(tmp_path) -> None:
    model = _fit(MLPClassifier(hidden_layer_sizes=(7, 5), activation="tanh", max_iter=100, random_state=0), 3)
    skops_io.dump(model, tmp_path / "t.skops")
    loaded = load_mlp(tmp_path / "t.skops")
    assert loaded.mlp.activation_spec == "tanh"
    np.testing.assert_allclose(_outputs(loaded, X_TEST), _logits(model, X_TEST), rtol=1e-4, atol=1e-4)


def test_pipeline_and_other_estimators_are_refused(tmp_path) -> None:
    pipe = _fit(make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(4,), max_iter=30)))
    skops_io.dump(pipe, tmp_path / "p.skops")
    with pytest.raises(ModelLoadError, match=r"Pipeline, not an MLP.*pipeline\[-1\]"):
        load_mlp(tmp_path / "p.skops")
    skops_io.dump(StandardScaler().fit(np.ones((3, 2))), tmp_path / "s.skops")
    with pytest.raises(ModelLoadError, match="StandardScaler, not an MLP"):
        load_mlp(tmp_path / "s.skops")


class Custom:
    """A type skops does not trust."""


def test_skops_with_untrusted_types_is_refused(tmp_path, monkeypatch) -> None:
    skops_io.dump({"model": Custom()}, tmp_path / "u.skops")

    def never(*args, **kwargs):
        raise AssertionError("loaded an untrusted file")

    monkeypatch.setattr(skops_io, "load", never)
    with pytest.raises(ModelLoadError, match=r"types probe does not trust.*Custom"):
        load_mlp(tmp_path / "u.skops")


def test_unfitted_model_is_refused(tmp_path) -> None:
    skops_io.dump(MLPRegressor(), tmp_path / "u.skops")
    with pytest.raises(ModelLoadError, match="no fitted weights"):
        load_mlp(tmp_path / "u.skops")
