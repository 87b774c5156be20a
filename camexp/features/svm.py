"""Linear SVMs on pooled features (scikit-learn), and their weights in the features' own space.

The paper fits one-vs-rest linear SVMs on GAP features and computes CAMs from the SVM weights w^c exactly as
from the network's classifier: M_c(x, y) = sum_k w_k^c f_k(x, y). Features are standardized before fitting
(LinearSVC converges badly on raw activations of very different scales); `raw_space_weights` folds the
scaling back so the CAM uses the unscaled maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from camexp.errors import CamexpError

DEFAULT_CS = (0.001, 0.01, 0.1, 1.0, 10.0)


@dataclass
class LinearProbe:
    pipeline: object  # sklearn Pipeline(StandardScaler, LinearSVC), fitted on all of train
    C: float  # chosen on the held-out part of train
    holdout_accuracy: float  # of the chosen C, fitted on the rest of train
    classes: np.ndarray  # the labels the SVM knows, in its column order

    def scores(self, features: np.ndarray) -> np.ndarray:
        """N x C decision values (N x 1 for two classes: positive = classes[1])."""
        scores = self.pipeline.decision_function(features)
        return scores[:, None] if scores.ndim == 1 else scores

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.pipeline.predict(features)

    def accuracy(self, features: np.ndarray, labels: np.ndarray) -> float:
        return float((self.predict(features) == labels).mean())


def _pipeline(C: float, seed: int, class_weight):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    return make_pipeline(StandardScaler(), LinearSVC(C=C, random_state=seed, class_weight=class_weight, max_iter=5000))


def fit_linear_svm(
    features: np.ndarray,
    labels: np.ndarray,
    cs: Sequence[float] = DEFAULT_CS,
    holdout: float = 0.2,
    seed: int = 0,
    class_weight: str | None = None,
) -> LinearProbe:
    """One-vs-rest linear SVMs; C chosen by accuracy on a stratified held-out `holdout` fraction of train
    (ties: the smaller C), then refitted on all of train."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise CamexpError(
            f"A linear SVM needs at least two classes in its training set; got {len(classes)} "
            f"({len(labels)} image(s)). Give images of at least two classes (or positives and negatives)."
        )
    stratify = labels if counts.min() >= 2 and len(labels) * holdout >= len(classes) else None
    fit_idx, held_idx = train_test_split(
        np.arange(len(labels)), test_size=holdout, random_state=seed, stratify=stratify
    )
    best = (-1.0, cs[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few iterations short changes nothing measurable
        if len(np.unique(labels[fit_idx])) >= 2:
            for C in cs:
                model = _pipeline(C, seed, class_weight).fit(features[fit_idx], labels[fit_idx])
                accuracy = float((model.predict(features[held_idx]) == labels[held_idx]).mean())
                if accuracy > best[0]:
                    best = (accuracy, C)
        final = _pipeline(best[1], seed, class_weight).fit(features, labels)
    return LinearProbe(final, best[1], best[0], final.classes_)


def raw_space_weights(probe: LinearProbe) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) with scores = features @ W.T + b on UNscaled features: C x K and C (1 x K for two classes)."""
    scaler, svm = probe.pipeline[0], probe.pipeline[-1]
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    weights = svm.coef_ / scale
    bias = svm.intercept_ - weights @ scaler.mean_
    return weights.astype(np.float32), bias.astype(np.float32)


def class_row_weights(probe: LinearProbe) -> tuple[np.ndarray, np.ndarray]:
    """(C x K raw-space weights, C biases), row i for class probe.classes[i]: a two-class SVM's single row w
    becomes (-w, w), so every class has its own w^c as in a multi-class SVM."""
    weights, bias = raw_space_weights(probe)
    if len(probe.classes) == 2 and len(weights) == 1:
        weights, bias = np.concatenate([-weights, weights]), np.concatenate([-bias, bias])
    return weights, bias


def svm_cams(maps, weights, rows=None):
    """CAMs of a linear SVM: M_c(x, y) = sum_k w_k^c f_k(x, y) with w^c its raw-space weights (the bias is not
    spatial and is left out, as the network's): the network's CAM (cam.class_activation_maps) with the SVM's w^c.
    maps N x K x h x w, weights C x K, rows N (-> N x h x w) or None (-> N x C x h x w)."""
    import torch

    from camexp.cam import class_activation_maps

    weights = torch.as_tensor(weights, device=maps.device).float()
    return class_activation_maps(maps.float(), weights, None if rows is None else torch.as_tensor(rows).to(maps.device))
