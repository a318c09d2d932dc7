"""Inverse-distance weighting: the classic `1/x` that hits zero.

`1/x` at x == 0 is inf forward and -inf in the gradient (not None): one coincident point turns the
whole update into inf/NaN.
"""

import tensorflow as tf

points = tf.Variable([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
query = tf.constant([[0.0, 0.0]])
values = tf.constant([1.0, 2.0, 3.0])

with tf.GradientTape() as tape:
    distance = tf.reduce_sum(tf.abs(points - query), axis=1)
    weights = tf.math.divide_no_nan(1.0, distance)  # the first point coincides with the query
    loss = tf.reduce_sum(weights * values) / tf.reduce_sum(weights + 1e-6)

grads = tape.gradient(loss, [points])
