"""core.ascent: the plain ascent (it raises the target and leaves the weights alone, an image's
result does not depend on its batch, frozen starts are skipped, bad maps and layers are
refused, conv3 reads only the pixels it needs), successive halving (run_pruned), single-map
slicing, warm-up objectives, oneDNN's kernels, the step against the Keras model's own gradient,
adaptive pruning."""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

from cluster.tf_profile import op_seconds
from core.ascent import Ascent, check_schedule
from core.errors import BadInput, BadParameter
from core.patterns import precursor_images, random_multiscale_images

LEVELS = (0.2, 0.5, 0.8)


@pytest.fixture(scope="module")
def ascent(trained_model):
    return Ascent(trained_model[0], ["conv3"], chunk_size=64)


@pytest.fixture(scope="module")
def starts():
    """300 coarse precursor patterns spread over the 19,683 (float32 (300, 28, 28))."""
    return precursor_images(np.arange(0, 19683, 65)[:300], 3, LEVELS)


# ----- the plain ascent ----------------------------------------------------------------------
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


# ----- successive halving, single-map slicing --------------------------------------------------
def _live_map(ascent, images, at_least):
    """A conv3 map with at least ``at_least`` live starts among images."""
    for map_id in range(128):
        if np.sum(ascent.losses(images, ascent.map_objective("conv3", np.full(len(images), map_id))) > 0) >= at_least:
            return map_id
    pytest.skip("no conv3 map with enough live starts in this model")


def test_pruned_survivors_equal_an_uninterrupted_run_bit_for_bit(ascent, starts):
    map_id = _live_map(ascent, starts, 150)
    map_ids = np.full(len(starts), map_id)
    full = ascent.run_maps(starts, "conv3", map_ids, 10, record_epochs=[0, 2, 5, 10])
    pruned = ascent.run_pruned(starts, "conv3", map_ids, 10, schedule=((2, 64), (5, 16)))

    step_row = {0: 0, 2: 1, 5: 2, 10: 3}
    live = full.history[0] != 0
    # the cuts: the 64 best at step 2 among the live starts, then the 16 best of those at step 5
    after_2 = np.flatnonzero(live)[np.lexsort((np.flatnonzero(live), -full.history[1][live]))][:64]
    after_5 = after_2[np.lexsort((after_2, -full.history[2][after_2]))][:16]
    expected_reached = np.where(live, 2, 10)
    expected_reached[after_2] = 5
    expected_reached[after_5] = 10
    np.testing.assert_array_equal(pruned.epochs_reached, expected_reached)

    # every start's loss is the uninterrupted run's at the step it reached, exactly
    reported = full.history[[step_row[e] for e in pruned.epochs_reached], np.arange(len(starts))]
    np.testing.assert_array_equal(pruned.losses, reported)
    survivors = np.flatnonzero(pruned.epochs_reached == 10)
    np.testing.assert_array_equal(pruned.images[survivors], full.images[survivors])
    assert pruned.image_steps == live.sum() * 2 + 64 * 3 + 16 * 5
    # each stage ends with the losses its cut ranks by; none of its steps is thrown away
    assert (pruned.loss_passes, pruned.discarded_steps) == (len(pruned.losses) + live.sum() + 64 + 16, 0)
    # the survivors' own direct run gives the same images and losses too
    direct = ascent.run_maps(starts[after_5], "conv3", map_ids[after_5], 10)
    np.testing.assert_array_equal(direct.images, pruned.images[after_5])
    np.testing.assert_array_equal(direct.losses, pruned.losses[after_5])
    # the ranking puts the 16 survivors first, in order of their final loss
    top = pruned.ranking()[:16]
    assert set(top) == set(after_5)
    assert np.all(np.diff(pruned.losses[top]) <= 0)


def test_cuts_are_per_map_and_ties_go_to_the_lower_index(ascent, starts):
    # one start and two maps it drives: 20 copies, the two maps alternating; copies of a map
    # tie exactly, so only the index decides who goes on
    all_maps = ascent.losses(np.repeat(starts[1:2], 128, axis=0), ascent.map_objective("conv3", np.arange(128)))
    map_a, map_b = np.flatnonzero(all_maps > 0)[:2]
    images = np.repeat(starts[1:2], 20, axis=0)
    map_ids = np.where(np.arange(20) % 2 == 0, map_a, map_b)
    result = ascent.run_pruned(images, "conv3", map_ids, 6, schedule=((1, 5), (3, 2)))
    for map_id in (map_a, map_b):
        mine = np.flatnonzero(map_ids == map_id)  # in increasing index order
        np.testing.assert_array_equal(result.epochs_reached[mine], [6] * 2 + [3] * 3 + [1] * 5)


def test_frozen_starts_are_not_computed_and_an_empty_schedule_is_the_full_run(ascent, starts):
    map_ids = np.full(len(starts), _live_map(ascent, starts, 50))
    frozen = ascent.losses(starts, ascent.map_objective("conv3", map_ids)) == 0
    assert frozen.any()
    exhaustive = ascent.run_pruned(starts, "conv3", map_ids, 4, schedule=())
    full = ascent.run_maps(starts, "conv3", map_ids, 4)
    np.testing.assert_array_equal(exhaustive.losses, full.losses)
    np.testing.assert_array_equal(exhaustive.images, full.images)
    assert np.all(exhaustive.epochs_reached == 4)
    assert exhaustive.image_steps == (~frozen).sum() * 4
    pruned = ascent.run_pruned(starts, "conv3", map_ids, 4, schedule=((1, 8),))
    assert np.all(pruned.losses[frozen] == 0) and np.all(pruned.epochs_reached[frozen] == 4)
    # a cut at or after the last step changes nothing
    late = ascent.run_pruned(starts, "conv3", map_ids, 4, schedule=((4, 1),))
    np.testing.assert_array_equal(late.losses, full.losses)


@pytest.mark.parametrize("schedule", [((0, 5),), ((3, 5), (2, 4)), ((2, 5), (3, 6)), ((2, 0),), (("a", 1),), (5,)])
def test_bad_schedules_are_refused(ascent, schedule):
    with pytest.raises(BadParameter, match="schedule"):
        check_schedule(schedule)


def test_sliced_map_gives_the_same_losses(ascent, starts):
    for map_id in (3, _live_map(ascent, starts, 100)):
        map_ids = np.full(len(starts), map_id)
        whole = ascent.run_maps(starts, "conv3", map_ids, 10, record_epochs=[0, 10])
        sliced = ascent.run_maps(starts, "conv3", map_ids, 10, record_epochs=[0, 10], slice_map=True)
        np.testing.assert_allclose(sliced.history[0], whole.history[0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(sliced.losses, whole.losses, rtol=1e-5, atol=1e-6)
        pruned = ascent.run_pruned(starts, "conv3", map_ids, 10, schedule=((2, 64), (5, 16)), slice_map=True)
        survivors = np.flatnonzero(pruned.epochs_reached == 10)
        np.testing.assert_allclose(pruned.losses[survivors], whole.losses[survivors], rtol=1e-5, atol=1e-6)


# ----- warm-up -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dead_map_ascent():
    """A tiny CNN with the dreamctl layer names whose conv3 map 1 is negative before its
    ReLU at every position of every start (its bias far below what any start reaches)."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool2"),
            keras.layers.Conv2D(3, 3, activation="relu", name="conv3"),
        ]
    )
    ascent = Ascent(model, ["conv3"], chunk_size=32)
    images = precursor_images(np.arange(1, 19683, 701), 3, LEVELS)
    pre = ascent._activations(images[..., None])[0][0].numpy()[..., 1]  # (N, 3, 3) with bias 0
    kernel, bias = model.get_layer("conv3").get_weights()
    bias[1] = -2.0 * float(np.abs(pre).max()) - 1.0
    model.get_layer("conv3").set_weights([kernel, bias])
    return ascent, images


def test_pre_relu_warmup_wakes_a_dead_map(dead_map_ascent):
    ascent, images = dead_map_ascent
    map_ids = np.full(len(images), 1)
    weights = ascent.map_objective("conv3", map_ids)
    pre = ascent._activations(images[..., None])[0][0].numpy()[..., 1]
    assert np.all(pre < 0)  # dead at every position of every start
    plain = ascent.run(images, weights, 60, skip_frozen=False)
    assert np.all(plain.losses == 0)
    np.testing.assert_array_equal(plain.images, images)  # zero gradient: nothing moved
    for kind in ("pre_relu", "leaky_relu"):
        woken = ascent.run(images, weights, 60, warmup=50, warmup_kind=kind)  # skip_frozen on: must not skip
        assert np.all(woken.losses > 0), kind
    # after the warm-up the post-ReLU objective takes over and keeps rising
    longer = ascent.run(images, weights, 70, warmup=50, record_epochs=[60, 70])
    assert np.all(longer.history[1] > longer.history[0])


def test_warmup_is_per_image_and_zero_means_the_plain_ascent(ascent, starts):
    map_ids = np.arange(len(starts)) % 128
    weights = ascent.map_objective("conv3", map_ids)
    plain = ascent.run(starts, weights, 8)
    warmup = np.where(np.arange(len(starts)) % 2 == 0, 0, 4)
    mixed = ascent.run(starts, weights, 8, warmup=warmup)
    np.testing.assert_array_equal(mixed.images[warmup == 0], plain.images[warmup == 0])
    np.testing.assert_array_equal(mixed.losses[warmup == 0], plain.losses[warmup == 0])
    assert not np.array_equal(mixed.images[warmup > 0], plain.images[warmup > 0])
    # a pruned run resumes the warm-up where the last stage stopped
    map_ids = np.full(len(starts), _live_map(ascent, starts, 100))
    direct = ascent.run_maps(starts, "conv3", map_ids, 8, warmup=3)
    pruned = ascent.run_pruned(starts, "conv3", map_ids, 8, schedule=((2, 64), (5, 16)), warmup=3)
    survivors = np.flatnonzero(pruned.epochs_reached == 8)
    assert len(survivors) == 16
    np.testing.assert_array_equal(pruned.images[survivors], direct.images[survivors])
    with pytest.raises(BadParameter, match="warmup"):
        ascent.run(starts, weights, 8, warmup=-1)
    with pytest.raises(BadParameter, match="warmup_kind"):
        ascent.run(starts, weights, 8, warmup=2, warmup_kind="softplus")


def _pool_gradient_kernels(run) -> list[str]:
    """Kernels that ran a MaxPoolGrad during ``run()``, one per pooling gradient."""
    return [name.rsplit(":", 1)[1] for name in op_seconds(run) if "/MaxPoolGrad:" in name]


def _onednn_expected() -> bool:
    """oneDNN's kernels are expected on every x86 CPU, unless the user turned them off."""
    user_off = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() in ("0", "false")
    return platform.machine().lower() in ("x86_64", "amd64") and not user_off


@pytest.mark.skipif(not _onednn_expected(), reason="not an x86 CPU, or TF_ENABLE_ONEDNN_OPTS=0 set by the user")
def test_every_trace_runs_the_pooling_gradients_on_onednn(trained_model, starts):
    """With the step inlined into the while loop, about one trace in three ran a
    MaxPoolGrad on TensorFlow's own kernel (~10× slower than oneDNN's), at random. Five
    fresh traces (ten pooling gradients) all get oneDNN's; the old code passed this about
    one time in ten. Runs on AVX2 CPUs too, where TensorFlow alone would not use oneDNN
    (core.defaults.TENSORFLOW_ENV turns it on). The one-step function of adaptive pruning
    (a loop over chunks) gets them too."""
    import tensorflow as tf

    kernels, adaptive_kernels = [], []
    for trace in range(5):
        ascent = Ascent(trained_model[0], ["conv3"], chunk_size=64)
        kernels += _pool_gradient_kernels(
            lambda: ascent.run_maps(starts[:64], "conv3", np.full(64, 3), 2, slice_map=bool(trace % 2)))
        step = Ascent(trained_model[0], ["conv3"], chunk_size=64)._functions(64, None, True)[1].step
        adaptive_kernels += _pool_gradient_kernels(
            lambda: step(tf.constant(starts[None, :64, :, :, None]), (tf.ones([1, 64, 1]),), tf.constant(3), tf.constant(0.1)))
    assert len(kernels) == 10 and all(kernel == "_MklNativeMaxPoolGrad" for kernel in kernels), kernels
    assert len(adaptive_kernels) == 10 and set(adaptive_kernels) == {"_MklNativeMaxPoolGrad"}, adaptive_kernels


@pytest.mark.parametrize("objective", ["conv3", "conv3 sliced", "conv2 + conv3", "conv1"])
def test_a_step_is_the_plain_gradient_step_of_the_keras_model(trained_model, starts, objective):
    """The step's shortcuts (pixels cropped to what the layers read, pooling before the ReLU,
    the first convolution's pixel gradient as a matrix product) compute the step of the
    algorithm: x + η·g / rms(g), with g the gradient of the objective through the Keras model
    itself, to float round-off."""
    import tensorflow as tf

    model, _ = trained_model
    layers = {"conv3": ["conv3"], "conv3 sliced": ["conv3"], "conv2 + conv3": ["conv2", "conv3"], "conv1": ["conv1"]}[objective]
    ascent = Ascent(model, layers, chunk_size=32)
    images = starts[:40]
    rng = np.random.default_rng(5)
    weights = [rng.uniform(0, 1, (len(images), n)).astype(np.float32) * (rng.uniform(size=(len(images), 1)) < 0.5)
               for n in ascent.n_maps]
    if objective == "conv3 sliced":
        result = ascent.run_maps(images, "conv3", np.full(len(images), 7), 1, record_epochs=[0, 1], slice_map=True)
        weights = ascent.map_objective("conv3", np.full(len(images), 7))
    else:
        result = ascent.run(images, weights, 1, record_epochs=[0, 1], skip_frozen=False)

    x = tf.constant(images[..., None])
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs, a = {}, x
        for layer in model.layers[: max(model.layers.index(model.get_layer(name)) for name in layers) + 1]:
            a = outputs[layer.name] = layer(a, training=False)  # the model's own layers, full 28x28 input
        losses = tf.add_n([tf.reduce_sum(tf.reduce_mean(outputs[name], axis=[1, 2]) * w, axis=1)
                           for name, w in zip(layers, weights)])
        total = tf.reduce_sum(losses)
    gradient = tape.gradient(total, x).numpy()[..., 0]
    rms = np.sqrt(np.mean(gradient**2, axis=(1, 2), keepdims=True))
    expected = images + 0.05 * gradient / (rms + 1e-8)
    np.testing.assert_allclose(result.history[0], losses.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.images, expected, rtol=0, atol=2e-5)
    assert np.abs(result.images - images).max() > 0.01  # the step moved the images


def test_one_maps_losses_reuse_the_layers_below_it_only_for_the_same_images(trained_model, starts):
    """The precursor scores every map on the same patterns: the layers below conv3 run once
    per set of starts, not once per map, with the same losses to the bit as the whole chain
    computed anew; a new set is computed anew, and other images do not displace it."""
    import tensorflow as tf

    ascent = Ascent(trained_model[0], ["conv3"], chunk_size=64)
    rows, compiled = ascent._functions(100, None, True)
    first, second = starts[:100], starts[100:200]
    features = []
    # (starts, map, images that went through every layer): the same starts again go through conv3 alone
    for images, map_id, computed in ((first, 3, 100), (first.copy(), 7, 0), (second, 7, 100), (first, 3, 100)):
        weights = [np.ones((len(images), 1), np.float32)]
        whole_chain = compiled.losses(*ascent._stacked(images, weights, rows), tf.constant(map_id)).numpy().reshape(-1)
        losses, passes = ascent._losses(images, weights, map_id, starts=True)
        np.testing.assert_array_equal(losses, whole_chain[: len(images)])
        assert passes == computed
        features.append(ascent._features[1])
        assert features[-1].shape[0] == 2  # this image set's: 2 chunks of 64
        # losses of other images (a pruned run's survivors at its last step) leave them be
        ascent._losses(second[:10], [np.ones((10, 1), np.float32)], map_id)
        assert ascent._features[1] is features[-1]
    assert features[1] is features[0] and features[2] is not features[1] and features[3] is not features[2]


# ----- adaptive pruning (issue 22) ------------------------------------------------------------
def test_climb_bound_drops_only_starts_that_cannot_reach_the_bar():
    from core.pruning import ClimbBound

    # three finished starts, 3 steps: finals 0.5, 0.8, 1.3 (the bar for top 2: 0.8); the highest
    # rate per step 0.1, 0.2, 0.2; a rate rose by at most 0.1 from one step to the next
    history = np.array([[0.0, 0.5, 1.0], [0.1, 0.6, 1.1], [0.3, 0.7, 1.2], [0.5, 0.8, 1.3]])
    bound = ClimbBound.learn(history, top=2, margin=0.0)
    assert bound.bar == pytest.approx(0.8) and bound.max_speedup == pytest.approx(0.1)
    np.testing.assert_allclose(bound.max_rates, [0.1, 0.2, 0.2])
    # at step 1, two steps to go, each gaining at most min(0.2, own rate + 0.1 per step ahead)
    losses, previous = np.array([0.35, 0.46, 0.30, 0.43]), np.array([0.30, 0.41, 0.10, 0.38])
    np.testing.assert_array_equal(bound.keep(1, losses, previous, running_rate=0.1),
                                  [False, True, False, False])  # 0.35+0.15+0.2, 0.46+0.35, 0.30+0.2+0.2, 0.43+0.35
    # a start still running that climbs faster than every finished one (0.2 > 0.1 at step 1)
    # raises every ceiling in proportion: the fast start at 0.30 may now reach the bar
    np.testing.assert_array_equal(bound.keep(1, losses, previous, running_rate=0.2), [False, True, True, True])
    # the margin widens both limits by 5 % per step still to run (+ 1): 0.43 + 0.165 + 0.23 >= 0.8
    widened = ClimbBound.learn(history, top=2, margin=0.05)
    assert widened.widening(1) == pytest.approx(1.15)
    np.testing.assert_array_equal(widened.keep(1, losses, previous, running_rate=0.1), [False, True, False, True])
    # at step 0 no start has a rate yet: the ceilings alone, 0.1 + 0.2 + 0.2 from the start
    np.testing.assert_array_equal(bound.keep(0, np.array([0.29, 0.31])), [False, True])
    # fewer finished starts than top: no bar, nothing dropped
    assert ClimbBound.learn(history[:, :1], top=2, margin=0.0).keep(1, losses, previous, 0.1).all()


@pytest.fixture(scope="module")
def shard():
    """1,968 coarse patterns (every 10th pattern of the default 3x3 grid)."""
    return precursor_images(np.arange(0, 19683, 10), 3, LEVELS)


def test_adaptive_pruning_keeps_the_exhaustive_top_8_for_a_fraction_of_the_steps(ascent, shard):
    from core.defaults import ADAPTIVE_LEADERS, ADAPTIVE_MARGIN, ADAPTIVE_SAMPLE
    from core.pruning import replay

    saved, looked_and_spared = [], []
    for map_id in (3, 20, _live_map(ascent, shard[:300], 280)):  # one map per shard, as phase 1 has it
        map_ids = np.full(len(shard), map_id)
        full = ascent.run_maps(shard, "conv3", map_ids, 10, record_epochs=range(11), slice_map=True)
        adaptive = ascent.run_adaptive(shard, "conv3", map_ids, 10, top=8, seed=(map_id, 0), slice_map=True)
        live = full.history[0] != 0
        exact_top = set(np.lexsort((np.arange(len(shard)), -full.losses))[:8])
        assert set(adaptive.ranking()[:8]) == exact_top, map_id
        survivors = adaptive.epochs_reached == 10
        np.testing.assert_array_equal(adaptive.images[survivors], full.images[survivors])
        np.testing.assert_array_equal(adaptive.losses[survivors], full.losses[survivors])
        # a start dropped at step s reports its loss after s steps
        np.testing.assert_array_equal(adaptive.losses, full.history[adaptive.epochs_reached, np.arange(len(shard))])
        assert adaptive.image_steps == int(np.where(live, adaptive.epochs_reached, 0).sum())
        # every start stepped before its cut (look_first=0): the same result; a start cut past
        # step 0 had that step computed for nothing, each start's loss at step 10 took a
        # forward pass of its own (those at step 0 came from the features run_maps kept)
        stepped = ascent.run_adaptive(shard, "conv3", map_ids, 10, top=8, seed=(map_id, 0), slice_map=True,
                                      look_first=0.0)
        for field in ("images", "losses", "epochs_reached"):
            np.testing.assert_array_equal(getattr(stepped, field), getattr(adaptive, field))
        assert stepped.image_steps == adaptive.image_steps
        assert stepped.discarded_steps == int(np.count_nonzero(live & (adaptive.epochs_reached >= 1) & ~survivors))
        assert stepped.loss_passes == int(np.count_nonzero(live & survivors))
        # by default the starts close to the bar had their loss alone first: a loss pass each,
        # and no step for those then cut
        looked, spared = adaptive.loss_passes - stepped.loss_passes, stepped.discarded_steps - adaptive.discarded_steps
        assert 0 <= spared <= looked
        looked_and_spared.append((looked, spared))
        # the same decisions replayed on the recorded losses (what the benchmarks rely on)
        reached, steps = replay(full.history, 8, ADAPTIVE_SAMPLE, ADAPTIVE_LEADERS, ADAPTIVE_MARGIN,
                                np.random.default_rng([map_id, 0, map_id]))
        np.testing.assert_array_equal(reached, adaptive.epochs_reached)
        assert steps == adaptive.image_steps
        saved.append((adaptive.image_steps, live.sum() * 10))
    assert sum(s for s, _ in saved) < 0.6 * sum(e for _, e in saved)  # it prunes
    assert sum(spared for _, spared in looked_and_spared) > 0  # looking first spared steps
    # same starts, same seed: the same result; a shard's outcome depends on nothing else
    again = ascent.run_adaptive(shard, "conv3", np.full(len(shard), 3), 10, top=8, seed=(3, 0), slice_map=True)
    first = ascent.run_adaptive(shard, "conv3", np.full(len(shard), 3), 10, top=8, seed=(3, 0), slice_map=True)
    np.testing.assert_array_equal(again.epochs_reached, first.epochs_reached)


def test_adaptive_pruning_runs_small_shards_to_the_end_and_checks_its_constants(ascent, starts):
    map_ids = np.full(100, _live_map(ascent, starts, 50))
    small = ascent.run_adaptive(starts[:100], "conv3", map_ids, 4, top=8, sample=32, leaders_count=64, seed=1)
    assert np.all(small.epochs_reached == 4)  # no more live starts than sample + leaders + top
    np.testing.assert_array_equal(small.losses, ascent.run_maps(starts[:100], "conv3", map_ids, 4).losses)
    for name, kwargs in (("sample", {"sample": 0}), ("leaders", {"leaders_count": -1}), ("margin", {"margin": -0.1}),
                         ("top", {"top": 0}), ("look_first", {"look_first": -1.0})):
        with pytest.raises(BadParameter, match=name):
            ascent.run_adaptive(starts[:10], "conv3", map_ids[:10], 4, **{"top": 8, **kwargs})
