"""Defaults of the batched ascent that job specs and ``--help`` read without loading
TensorFlow (core/ascent.py imports them from here)."""

LEARNING_RATE = 0.05  # η of an OIP ascent step, in units of the standardized pixel values (algorithms.md §2)
CHUNK_SIZE = 256  # images per compiled ascent step (rows of one tf.function call)
