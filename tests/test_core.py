"""core: the ascent, the patterns, the data loaders."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from core.ascent import Ascent
from core.data import load_dataset, load_idx_folder, load_npz
from core.errors import BadInput
from core.patterns import (
    check_pattern_space,
    coarse_patterns,
    pattern_digits,
    pattern_index,
    precursor_images,
    random_multiscale_images,
)


@pytest.fixture(scope="module")
def ascent(trained_model):
    model, _ = trained_model
    return Ascent(model, ["conv3"], chunk_size=64)


def test_ascent_raises_target_activation_and_keeps_weights(trained_model, ascent):
    model, _ = trained_model
    weights_before = [w.copy() for w in model.get_weights()]
    images = random_multiscale_images(32, seed=1)
    map_ids = np.arange(32) * 4 % 128
    before = ascent.losses(images, ascent.map_objective("conv3", map_ids))
    result = ascent.run_maps(images, "conv3", map_ids, epochs=30, record_epochs=[0, 10, 30])
    alive = before > 0
    assert alive.sum() >= 16
    assert np.all(result.losses[alive] > before[alive] * 1.5)
    np.testing.assert_allclose(result.history[0], before, rtol=1e-5)
    np.testing.assert_allclose(result.history[-1], result.losses, rtol=1e-5)
    for w_before, w_after in zip(weights_before, model.get_weights()):
        np.testing.assert_array_equal(w_before, w_after)


def test_each_image_is_independent_of_its_batch(ascent):
    images = random_multiscale_images(40, seed=2)
    map_ids = np.arange(40) % 128
    together = ascent.run_maps(images, "conv3", map_ids, epochs=15)
    for i in (0, 17, 39):  # alone (a different chunk shape) and among other images
        alone = ascent.run_maps(images[i : i + 1], "conv3", map_ids[i : i + 1], epochs=15)
        np.testing.assert_allclose(alone.images[0], together.images[i], atol=1e-4)
        np.testing.assert_allclose(alone.losses[0], together.losses[i], rtol=1e-4, atol=1e-6)
    shuffled = np.random.default_rng(0).permutation(40)
    again = ascent.run_maps(images[shuffled], "conv3", map_ids[shuffled], epochs=15)
    np.testing.assert_allclose(again.losses, together.losses[shuffled], rtol=1e-4, atol=1e-6)


def test_skipping_frozen_images_changes_nothing(ascent):
    images = precursor_images(np.arange(0, 19683, 97), 3, (0.2, 0.5, 0.8))
    map_ids = np.full(len(images), 7)
    weights = ascent.map_objective("conv3", map_ids)
    fast = ascent.run(images, weights, epochs=5, skip_frozen=True)
    full = ascent.run(images, weights, epochs=5, skip_frozen=False)
    np.testing.assert_allclose(fast.losses, full.losses, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast.images, full.images, atol=1e-4)


def test_ascent_rejects_bad_maps_and_layers(trained_model, ascent):
    with pytest.raises(BadInput, match="out of range"):
        ascent.map_objective("conv3", np.array([128]))
    with pytest.raises(BadInput, match="unknown layer"):
        Ascent(trained_model[0], ["conv9"])


def test_pattern_enumeration_is_a_bijection_with_exact_levels():
    levels = (0.2, 0.5, 0.8)
    indices = np.arange(3**9)
    digits = pattern_digits(indices, 3, 3)
    assert digits.shape == (3**9, 3, 3)
    assert len({d.tobytes() for d in digits}) == 3**9  # every combination exactly once
    np.testing.assert_array_equal(pattern_index(digits, 3), indices)
    coarse = coarse_patterns(indices, 3, levels)
    assert set(np.unique(coarse)) == {np.float32(v) for v in levels}
    # index 1 sets only the first cell to the second level
    np.testing.assert_array_equal(coarse[1], np.array([[0.5, 0.2, 0.2], [0.2, 0.2, 0.2], [0.2, 0.2, 0.2]], np.float32))


def test_precursor_images_are_standardized_28x28():
    images = precursor_images(np.array([1, 5000, 19681]), 3, (0.2, 0.5, 0.8))
    assert images.shape == (3, 28, 28) and images.dtype == np.float32
    np.testing.assert_allclose(images.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(images.std(axis=(1, 2)), 1, atol=1e-4)
    # a constant pattern has no structure: all zeros, not NaN
    assert np.all(precursor_images(np.array([0]), 3, (0.2, 0.5, 0.8)) == 0)


def test_absurd_pattern_spaces_are_refused():
    assert check_pattern_space(3, (0.2, 0.5, 0.8)) == 19683
    with pytest.raises(BadInput, match="patterns"):
        check_pattern_space(9, (0.2, 0.5, 0.8))


def test_multiscale_starts_are_seeded_and_standardized():
    a = random_multiscale_images(4, seed=(0, 5, 1))
    b = random_multiscale_images(4, seed=(0, 5, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, random_multiscale_images(4, seed=(0, 5, 2)))
    np.testing.assert_allclose(a.std(axis=(1, 2)), 1, atol=1e-4)


def _write_idx(path, array, gz):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("gz", [False, True])
def test_the_three_loaders_agree(tmp_path, dataset, gz):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (50, 28, 28)),
        "y_train": rng.integers(0, 10, 50),
        "x_test": rng.integers(0, 256, (20, 28, 28)),
        "y_test": rng.integers(0, 10, 20),
    }
    names = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    for key, name in names.items():
        _write_idx(tmp_path / name, arrays[key], gz)
    np.savez(tmp_path / "mnist.npz", **{k: v.astype(np.uint8) for k, v in arrays.items()})
    from_idx = load_idx_folder(tmp_path)
    from_npz = load_npz(tmp_path / "mnist.npz")
    for loaded in (from_idx, from_npz, dataset):
        assert loaded.x_train.dtype == np.uint8 and loaded.x_train.shape[1:] == (28, 28)
        assert loaded.y_train.dtype == np.int64 and loaded.y_train.ndim == 1
        assert len(loaded.x_test) == len(loaded.y_test)
    for key in arrays:
        np.testing.assert_array_equal(getattr(from_idx, key), getattr(from_npz, key))
    assert from_idx.checksum == from_npz.checksum
    assert load_dataset(str(tmp_path)).checksum == from_idx.checksum


def test_bundled_digits_split_is_stratified_and_fixed(dataset):
    assert (len(dataset.x_train), len(dataset.x_test)) == (4000, 1000)
    assert np.all(np.bincount(dataset.y_test, minlength=10) == 100)
    assert dataset.identity() == load_dataset("mnist-5k").identity()


def test_missing_data_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        load_dataset(str(tmp_path / "nothing.npz"))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(BadInput):
        load_dataset(str(tmp_path / "broken.npz"))


def test_conv3_runs_on_the_pixels_it_reads_with_identical_activations(trained_model):
    import keras

    model, _ = trained_model
    ascent = Ascent(model, ["conv3"], chunk_size=16)
    assert ascent.input_extent == 26  # the 2x2 poolings never read the last two rows/columns
    assert Ascent(model, ["conv2"]).input_extent == 28
    images = random_multiscale_images(16, seed=4)
    full = keras.Model(model.inputs, model.get_layer("conv3").output)([images[..., None]]).numpy()
    weights = ascent.map_objective("conv3", np.arange(16))
    np.testing.assert_allclose(ascent.losses(images, weights), full.mean(axis=(1, 2))[np.arange(16), np.arange(16)], rtol=1e-6)
    moved = ascent.run(images, weights, epochs=5).images
    np.testing.assert_array_equal(moved[:, 26:, :], images[:, 26:, :])



# ----- TensorFlow's environment: oneDNN's kernels on every x86 CPU ------------------------------
@pytest.mark.parametrize("first_import", ["cli.quiet", "cluster.worker"])  # the driver, an actor
def test_tensorflow_runs_onednn_kernels_on_x86_when_nobody_said_otherwise(first_import):
    """TensorFlow alone turns oneDNN on only on AVX-512 VNNI CPUs and newer, not on AVX2 ones:
    the driver's and the actors' first module sets TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow
    loads, in a process whose environment does not set it."""
    import json
    import os
    import platform
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    code = (f"import json, os, {first_import}, tensorflow\n"
            "from core.ascent import onednn_enabled\n"
            "print(json.dumps([os.environ.get('TF_ENABLE_ONEDNN_OPTS'), onednn_enabled()]))")
    done = subprocess.run([sys.executable, "-c", code], env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
                          cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=300, check=True)
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["1", x86]


@pytest.mark.parametrize("value", ["0", "1", "false"])
def test_a_users_onednn_setting_wins(monkeypatch, value):
    from core.defaults import tensorflow_environment

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", value)
    tensorflow_environment()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == value
