"""The MNIST CNN of algorithms.md §1: build, standardize inputs, train, evaluate.

Layer names (``conv1``, ``conv2``, ``conv3``) are what every job refers to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from core.data import Dataset
from core.params import check_params, param

if TYPE_CHECKING:  # keras loads TensorFlow: imported where a model is built, not by --help
    import keras

IMAGE_SIZE = 28
CONV_LAYERS = {"conv1": 32, "conv2": 64, "conv3": 128}  # name -> number of maps


@dataclass(frozen=True)
class Standardization:
    """z-score of pixel intensities in [0, 1]: (pixels / 255 - mean) / std."""

    mean: float
    std: float

    @classmethod
    def fit(cls, images_uint8: np.ndarray) -> "Standardization":
        pixels = images_uint8.astype(np.float64) / 255.0
        return cls(mean=float(pixels.mean()), std=float(pixels.std()))

    def apply(self, images_uint8: np.ndarray) -> np.ndarray:
        """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1), standardized."""
        pixels = images_uint8.astype(np.float32) / 255.0
        return ((pixels - self.mean) / self.std)[..., None].astype(np.float32)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """CNN training settings (blog part III): SGD with momentum, per-epoch LR decay, L2."""

    epochs: int = param(15, "Training epochs (passes over the training images).", low=1)
    batch_size: int = param(64, "Images per mini-batch.", low=1)
    learning_rate: float = param(0.01, "SGD learning rate of the first epoch.", above=0.0)
    lr_decay: float = param(0.9, "Learning-rate factor per epoch: epoch e uses learning_rate · lr_decay^e.", low=0.0, high=1.0)
    momentum: float = param(0.9, "SGD momentum.", low=0.0, high=1.0)
    dense_units: int = param(70, "Width of the dense layer.", low=1, high=10_000)
    dense_l2: float = param(1e-3, "L2 coefficient on the dense layer's kernel.", low=0.0)
    seed: int = param(0, "Random seed of the weights and the shuffling.", low=0)

    def __post_init__(self) -> None:
        check_params(self)


def build_cnn(dense_units: int = 70, dense_l2: float = 1e-3) -> keras.Sequential:
    """Conv(32)-Pool-Conv(64)-Pool-Conv(128) → Dense(dense_units) → softmax(10); input standardized."""
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name="image"),
            keras.layers.Conv2D(32, 3, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            keras.layers.Conv2D(64, 3, activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool2"),
            keras.layers.Conv2D(128, 3, activation="relu", name="conv3"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(
                dense_units,
                activation="relu",
                kernel_regularizer=keras.regularizers.L2(dense_l2),
                name="dense",
            ),
            keras.layers.Dense(10, activation="softmax", name="digits"),
        ],
        name="mnist_cnn",
    )


def train_cnn(
    data: Dataset,
    config: TrainConfig = TrainConfig(),
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> tuple[keras.Model, Standardization, dict]:
    """Train a fresh CNN on ``data``.

    Returns the model, the standardization fitted on the training images, and metrics
    {train_accuracy, test_accuracy, epochs, epoch_test_accuracy (one per epoch)}.
    ``on_epoch_end(epoch, logs)`` is called after every epoch (for progress display); its
    logs hold the epoch's loss and accuracy, and ``val_accuracy``, the test accuracy.
    """
    import keras

    keras.utils.set_random_seed(config.seed)
    standardization = Standardization.fit(data.x_train)
    x_train = standardization.apply(data.x_train)
    x_test = standardization.apply(data.x_test)
    model = build_cnn(config.dense_units, config.dense_l2)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = [
        keras.callbacks.LearningRateScheduler(
            lambda epoch: config.learning_rate * config.lr_decay**epoch
        )
    ]
    if on_epoch_end is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end))
    history = model.fit(
        x_train,
        data.y_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
        validation_data=(x_test, data.y_test),  # measured only: the weights never see it
    )
    metrics = {
        "train_accuracy": accuracy(model, x_train, data.y_train),
        "test_accuracy": accuracy(model, x_test, data.y_test),
        "epochs": config.epochs,
        "epoch_test_accuracy": [float(value) for value in history.history["val_accuracy"]],
    }
    return model, standardization, metrics


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of standardized images (N, 28, 28, 1) classified as ``labels`` (N,)."""
    predictions = model.predict(images, batch_size=1024, verbose=0).argmax(axis=1)
    return float((predictions == labels).mean())
