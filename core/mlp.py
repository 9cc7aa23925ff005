"""Multilayer perceptron in plain numpy: sigmoid units, log-loss, L2, momentum.

Objective (loss) scaling
------------------------
For a set of samples X (n rows) with one-hot targets Y the objective is

    J(X) = sum_i sum_k CE(y_ik, a_ik)  +  lambda2 / 2 * sum_l sum(W_l ** 2)

with CE(y, a) = -(y log a + (1 - y) log(1 - a)) and a the sigmoid outputs.
The data term is *summed* over samples and classes (not averaged), and the L2
term (weights only, never biases) is added once per set, i.e. once per
mini-batch during training. This is the seed's convention: with it the
default learning rate 0.001 acts on the gradient summed over 500 samples.
`MLP.loss` returns J and `MLP.gradients` returns its exact gradient, so J's
value depends on how many samples are passed in.

Shapes: X is (n_samples, layer_sizes[0]); W_l is (layer_sizes[l],
layer_sizes[l + 1]) and b_l is (layer_sizes[l + 1],); "layer l" in the
per-layer timings means the weight layer l, mapping layer l to layer l + 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from core.errors import BadParameter
from core.params import check_params, param, parse_ints

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class MLPConfig:
    """Hyperparameters; defaults are the seed's values.

    layer_sizes: nodes per layer, input first, output (= number of classes) last.
    lambda2: L2 coefficient on weights (biases excluded), see module docstring.
    learning_rate: eta0; epoch with 0-based index e uses eta0 / (1 + lr_decrease * e).
    momentum: update is delta = -eta * grad + momentum * previous delta.
    batch_size: samples per mini-batch (the last one of an epoch may be smaller).
    epochs: passes over the training set; batches are reshuffled every epoch.
    init_range: weights and biases of layer l start uniform in
        +-init_range / sqrt(layer_sizes[l]).
    eval_every: accuracies are computed every this many epochs and at the last.
    seed: seed of np.random.default_rng for initialisation and shuffling.
    dtype: float32 or float64 for weights and computations.
    """

    layer_sizes: tuple[int, ...] = param((784, 70, 30, 10), "Layer sizes, input to output.", low=1, parse=parse_ints)
    lambda2: float = param(0.2, "L2 coefficient on the weights (biases excluded).", low=0.0)
    learning_rate: float = param(0.001, "Learning rate η0 of the first epoch (on the gradient summed over a batch).", above=0.0)
    lr_decrease: float = param(1e-5, "Learning-rate decrease d: epoch e (from 0) uses η0 / (1 + d·e).", low=0.0)
    momentum: float = param(5e-5, "Momentum rate: update = −η·gradient + momentum · previous update.", low=0.0)
    batch_size: int = param(500, "Images per mini-batch (reshuffled every epoch).", low=1)
    epochs: int = param(600, "Training epochs (passes over the training set).", low=1)
    init_range: float = param(2.0, "Initial weights uniform in ±init_range / √(inputs of the layer).", above=0.0)
    eval_every: int = param(1, "Compute train and test accuracy every this many epochs (and at the last).", low=1)
    seed: int = param(0, "Seed of the initial weights and the batch shuffling.", low=0)
    dtype: DTypeLike = np.float32

    def __post_init__(self) -> None:
        check_params(self)
        if len(self.layer_sizes) < 2:
            raise BadParameter("layer_sizes", f"needs at least 2 layers (input and output), got {self.layer_sizes}")
        if np.dtype(self.dtype) not in _FLOAT_DTYPES:
            raise BadParameter("dtype", f"must be float32 or float64, got {self.dtype}")


@dataclass(frozen=True)
class EpochMetrics:
    """What one training epoch measured.

    epoch: 1-based epoch number.
    loss: mean over the epoch's mini-batches of the batch objective J (data
        term + L2 term), each taken at the weights before that batch's update.
    l2_share: sum of the batches' L2 terms / sum of their objectives, in [0, 1].
    train_acc, test_acc: accuracy in [0, 1] after the epoch; nan when the
        epoch was not evaluated (test_acc also when no test data was given).
    seconds: wall-clock seconds of the epoch, evaluation included.
    forward_cpu_s, backward_cpu_s: process CPU seconds per weight layer
        (index l maps layer l to l + 1), summed over the epoch's batches.
    """

    epoch: int
    loss: float
    l2_share: float
    train_acc: float
    test_acc: float
    seconds: float
    forward_cpu_s: tuple[float, ...]
    backward_cpu_s: tuple[float, ...]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large |z|."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def one_hot(y: ArrayLike, n_classes: int, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Integer labels (n,) in [0, n_classes) -> one-hot matrix (n, n_classes)."""
    labels = np.asarray(y)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be a 1-D integer array")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes})")
    Y = np.zeros((labels.size, n_classes), dtype=dtype)
    Y[np.arange(labels.size), labels] = 1
    return Y


def standardize(train: ArrayLike, *others: ArrayLike) -> tuple[np.ndarray, ...]:
    """Scale every feature (column) by the train set's mean and std.

    Features with std 0 in train are only centred (std taken as 1). Returns
    (train, *others) standardized, float32 if the input is float32 else float64.
    """
    arrays = [np.asarray(a) for a in (train, *others)]
    mean = arrays[0].mean(axis=0, dtype=np.float64)
    std = arrays[0].std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return tuple(
        ((a - mean) / std).astype(np.float32 if a.dtype == np.float32 else np.float64)
        for a in arrays
    )


class MLP:
    """Fully connected sigmoid network trained by mini-batch gradient descent.

    Attributes `weights` and `biases` are lists with one array per weight layer
    (shapes in the module docstring).
    """

    def __init__(self, config: MLPConfig) -> None:
        self.config = config
        self.dtype = np.dtype(config.dtype)
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        self.init_weights()

    def init_weights(self) -> None:
        """Reset the generator from the seed and draw weights and biases anew."""
        self._rng = np.random.default_rng(self.config.seed)
        self.weights, self.biases = [], []
        sizes = self.config.layer_sizes
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            bound = self.config.init_range / math.sqrt(n_in)
            self.weights.append(self._rng.uniform(-bound, bound, (n_in, n_out)).astype(self.dtype))
            self.biases.append(self._rng.uniform(-bound, bound, n_out).astype(self.dtype))

    def _check_X(self, X: ArrayLike) -> np.ndarray:
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.config.layer_sizes[0]:
            raise ValueError(f"X must have shape (n, {self.config.layer_sizes[0]}), got {X.shape}")
        return X

    def _forward(self, X: np.ndarray, cpu: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Activations [X, a_1, ..., a_L] and the output pre-activation z_L.

        Adds each layer's CPU seconds to cpu[l].
        """
        acts = [X]
        z = X
        for l, (W, b) in enumerate(zip(self.weights, self.biases)):
            t0 = time.process_time()
            z = acts[-1] @ W + b
            acts.append(_sigmoid(z))
            cpu[l] += time.process_time() - t0
        return acts, z

    def _objective_and_gradients(
        self, X: np.ndarray, Y: np.ndarray, fw_cpu: np.ndarray, bw_cpu: np.ndarray
    ) -> tuple[float, float, list[tuple[np.ndarray, np.ndarray]]]:
        """(J, L2 part of J, [(dW_l, db_l)]) for one batch, timing each layer."""
        acts, z_out = self._forward(X, fw_cpu)
        # CE summed = sum(softplus(z) - y * z), stable for saturated outputs.
        data = float(np.sum(np.logaddexp(0.0, z_out) - Y * z_out, dtype=np.float64))
        lam = self.config.lambda2
        l2 = 0.5 * lam * sum(float(np.sum(W.astype(np.float64) ** 2)) for W in self.weights)
        grads: list[tuple[np.ndarray, np.ndarray]] = []
        t0 = time.process_time()
        delta = acts[-1] - Y  # dJ/dz_L for sigmoid outputs with cross entropy
        for l in reversed(range(len(self.weights))):
            W = self.weights[l]
            grads.append((acts[l].T @ delta + lam * W, delta.sum(axis=0)))
            if l > 0:
                delta = (delta @ W.T) * acts[l] * (1.0 - acts[l])
            t1 = time.process_time()
            bw_cpu[l] += t1 - t0
            t0 = t1
        grads.reverse()
        return data + l2, l2, grads

    def _check_Y(self, X: np.ndarray, Y_onehot: ArrayLike) -> np.ndarray:
        Y = np.asarray(Y_onehot, dtype=self.dtype)
        if Y.shape != (X.shape[0], self.config.layer_sizes[-1]):
            expected = (X.shape[0], self.config.layer_sizes[-1])
            raise ValueError(f"Y_onehot must have shape {expected}, got {Y.shape}")
        return Y

    def forward(self, X: ArrayLike) -> list[np.ndarray]:
        """Activations [X, a_1, ..., a_L], each (n, layer_sizes[l])."""
        return self._forward(self._check_X(X), np.zeros(len(self.weights)))[0]

    def loss(self, X: ArrayLike, Y_onehot: ArrayLike) -> tuple[float, float]:
        """(J, L2 part of J) for X taken as one batch; J as in the module docstring."""
        X = self._check_X(X)
        n = len(self.weights)
        Y = self._check_Y(X, Y_onehot)
        total, l2, _ = self._objective_and_gradients(X, Y, np.zeros(n), np.zeros(n))
        return total, l2

    def gradients(self, X: ArrayLike, Y_onehot: ArrayLike) -> list[tuple[np.ndarray, np.ndarray]]:
        """Exact gradient of `loss(X, Y_onehot)[0]`: [(dW_l, db_l)] shaped like (W_l, b_l)."""
        X = self._check_X(X)
        n = len(self.weights)
        Y = self._check_Y(X, Y_onehot)
        return self._objective_and_gradients(X, Y, np.zeros(n), np.zeros(n))[2]

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Class labels (n,): index of the largest output unit."""
        return np.argmax(self.forward(X)[-1], axis=1)

    def fit(
        self,
        X_train: ArrayLike,
        y_train: ArrayLike,
        X_test: ArrayLike | None = None,
        y_test: ArrayLike | None = None,
        on_epoch: Callable[[EpochMetrics], object] | None = None,
    ) -> list[EpochMetrics]:
        """Train from freshly initialised weights; one EpochMetrics per epoch.

        X_*: (n, layer_sizes[0]) features; y_*: (n,) integer labels.
        on_epoch(metrics) is called after every epoch; its return value is ignored.
        """
        cfg = self.config
        if (X_test is None) != (y_test is None):
            raise ValueError("give both X_test and y_test, or neither")
        X = self._check_X(X_train)
        y = np.asarray(y_train)
        Y = self._check_Y(X, one_hot(y, cfg.layer_sizes[-1], self.dtype))
        if X_test is not None:
            X_test = self._check_X(X_test)
            y_test = np.asarray(y_test)
            if y_test.shape != (X_test.shape[0],):
                raise ValueError(f"y_test must have shape ({X_test.shape[0]},), got {y_test.shape}")

        self.init_weights()
        n_layers = len(self.weights)
        vel_W = [np.zeros_like(W) for W in self.weights]
        vel_b = [np.zeros_like(b) for b in self.biases]
        history: list[EpochMetrics] = []
        # a diverging run overflows quietly: its loss becomes inf/nan, which the caller reports
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for e in range(cfg.epochs):
                t_wall = time.perf_counter()
                eta = cfg.learning_rate / (1.0 + cfg.lr_decrease * e)
                fw_cpu, bw_cpu = np.zeros(n_layers), np.zeros(n_layers)
                totals, l2s = [], []
                order = self._rng.permutation(X.shape[0])
                for start in range(0, X.shape[0], cfg.batch_size):
                    idx = order[start : start + cfg.batch_size]
                    total, l2, grads = self._objective_and_gradients(X[idx], Y[idx], fw_cpu, bw_cpu)
                    totals.append(total)
                    l2s.append(l2)
                    for l, (dW, db) in enumerate(grads):
                        vel_W[l] = cfg.momentum * vel_W[l] - eta * dW
                        vel_b[l] = cfg.momentum * vel_b[l] - eta * db
                        self.weights[l] += vel_W[l]
                        self.biases[l] += vel_b[l]

                train_acc = test_acc = math.nan
                if (e + 1) % cfg.eval_every == 0 or e + 1 == cfg.epochs:
                    train_acc = float(np.mean(self.predict(X) == y))
                    if X_test is not None:
                        test_acc = float(np.mean(self.predict(X_test) == y_test))
                metrics = EpochMetrics(
                    epoch=e + 1,
                    loss=float(np.mean(totals)),
                    l2_share=float(sum(l2s) / sum(totals)),
                    train_acc=train_acc,
                    test_acc=test_acc,
                    seconds=time.perf_counter() - t_wall,
                    forward_cpu_s=tuple(float(t) for t in fw_cpu),
                    backward_cpu_s=tuple(float(t) for t in bw_cpu),
                )
                history.append(metrics)
                if on_epoch is not None:
                    on_epoch(metrics)
        return history
