"""Quantisation-aware fitting of a step function: the classic `np.floor` on a Variable.

The forward pass rounds the weights to a grid. `np.floor` returns a NumPy array, so TensorFlow
records nothing between the weights and the loss, and `tape.gradient` returns `[None]`.
"""

import numpy as np
import tensorflow as tf

GRID = 0.25

w = tf.Variable([0.37, -1.12, 2.61, 0.05])
targets = tf.constant([0.5, -1.0, 2.5, 0.0])

with tf.GradientTape() as tape:
    scaled = w / GRID
    quantised = np.floor(scaled) * GRID  # snap every weight down to the grid
    loss = tf.reduce_sum((quantised - targets) ** 2)

grads = tape.gradient(loss, [w])
