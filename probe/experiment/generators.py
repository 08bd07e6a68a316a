"""The data generators of shipped scenarios: deterministic given a ``torch.Generator``.

Each generator takes the scenario's ``[data]`` spec (it reads ``n_features``),
the number of samples and the generator, and returns raw ``(X, y)``; the
standardisation and the train/eval split are :func:`probe.experiment.datasets.make_datasets`'s.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

def _teacher(spec, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian inputs and the raw teacher signal ``s1 + 0.8 sin(2 s2)``, both signs."""
    f = spec.n_features
    w, v = torch.randn(f, generator=gen), torch.randn(f, generator=gen)
    X = torch.randn(n, f, generator=gen)
    s1, s2 = X @ w / f ** 0.5, X @ v / f ** 0.5
    return X, s1 + 0.8 * torch.sin(2.0 * s2)


def _anticorrelated(spec, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets that fall as every input rises: ``-(s + 0.5 tanh(2 s))``, ``s = X|w|/||w||``."""
    w = torch.randn(spec.n_features, generator=gen).abs() + 0.1
    X = torch.randn(n, spec.n_features, generator=gen)
    s = X @ w / w.norm()
    return X, -(s + 0.5 * torch.tanh(2.0 * s))


def _mixed(spec, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the inputs raise the target and half lower it: ``s + 0.5 tanh(2 s)``, ``s = X w / ||w||``
    with ``w_i > 0`` on the first half of the features and ``w_i < 0`` on the rest."""
    f = spec.n_features
    w = torch.randn(f, generator=gen).abs() + 0.1
    w[f // 2:] = -w[f // 2:]
    X = torch.randn(n, f, generator=gen)
    s = X @ w / w.norm()
    return X, s + 0.5 * torch.tanh(2.0 * s)


def _bundled(name: str, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` rows of scikit-learn's bundled dataset ``load_<name>``, in a seeded random order."""
    from sklearn import datasets

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    order = torch.randperm(X.shape[0], generator=gen)
    X = torch.as_tensor(np.asarray(X, dtype=np.float32))[order]
    y = torch.as_tensor(np.asarray(y, dtype=np.float32))[order]
    return X[:n], y[:n]


def _diabetes(spec, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled diabetes data (442 x 10, no download), in a seeded random order."""
    return _bundled("diabetes", n, gen)


def _signed_classes(spec, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes split by the sign of the signed teacher (``noise`` blurs the boundary)."""
    X, s = _teacher(spec, n, gen)
    s = (s - s.mean()) / s.std().clamp_min(1e-8)
    return X, (s + spec.noise * torch.randn(n, generator=gen) > 0).float()


def _three_classes(spec, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes: the largest of three teacher scores ``X w_k / sqrt(f) + 0.5 sin(2 X v / sqrt(f))``."""
    f = spec.n_features
    w, v = torch.randn(f, 3, generator=gen), torch.randn(f, 3, generator=gen)
    X = torch.randn(n, f, generator=gen)
    scores = X @ w / f ** 0.5 + 0.5 * torch.sin(2.0 * X @ v / f ** 0.5)
    scores = scores + spec.noise * torch.randn(n, 3, generator=gen)
    return X, scores.argmax(1).float()


def _breast_cancer(spec, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled breast-cancer data (569 x 30, 2 classes, no download), in a seeded order."""
    return _bundled("breast_cancer", n, gen)


DIABETES_SAMPLES, DIABETES_FEATURES = 442, 10
#: the bundled scikit-learn data: generator -> (samples, features)
SKLEARN_SIZES = {"diabetes": (DIABETES_SAMPLES, DIABETES_FEATURES), "breast_cancer": (569, 30)}
#: classification generators -> number of classes (labels 0..K-1); the others are regression
CLASSES = {"signed_classes": 2, "three_classes": 3, "breast_cancer": 2}

#: generator name -> (function, one-line description, positive shift of the target)
GENERATORS: dict[str, tuple[Callable, str, bool]] = {
    "signed": (_teacher, "Gaussian inputs, teacher s1 + 0.8 sin(2 s2), standardised: zero mean, both signs", False),
    "positive": (_teacher, "the signed teacher shifted so every target is positive (min 0.1)", True),
    "anticorrelated": (_anticorrelated, "targets that fall as every input rises, standardised", False),
    "diabetes": (_diabetes, "scikit-learn's bundled diabetes data, inputs and target standardised", False),
    "mixed": (_mixed, "half the inputs raise the target, half lower it, standardised", False),
    "signed_classes": (_signed_classes, "two classes: the sign of the signed teacher", False),
    "three_classes": (_three_classes, "three classes: the largest of three teacher scores", False),
    "breast_cancer": (_breast_cancer, "scikit-learn's bundled breast-cancer data, 2 classes, inputs standardised",
                      False),
}
