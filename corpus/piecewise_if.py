"""A piecewise loss written with Python control flow: the classic `if x > 1:` on a tensor.

For a scalar this is fine in eager mode; for the batch of predictions below, Python asks for one
truth value of a vector and TensorFlow raises `ValueError: The truth value of an array with more
than one element is ambiguous`.
"""

import tensorflow as tf


def smooth_l1(residual):
    """Huber-style loss, elementwise."""
    if residual < 1.0:
        return 0.5 * residual ** 2
    else:
        return residual - 0.5


def log_barrier(margin):
    """Penalty that grows as the margin shrinks; zero for non-positive margins."""
    if margin > 0.0:
        return -tf.math.log(margin)
    else:
        return margin * 0.0


weights = tf.Variable([[0.4], [-0.3], [0.8]])
features = tf.constant([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 0.5, -0.5], [0.1, 0.1, 0.1]])
labels = tf.constant([[1.0], [0.5], [-1.0], [0.0]])

with tf.GradientTape() as tape:
    predictions = tf.matmul(features, weights)
    residual = tf.abs(predictions - labels)
    loss = tf.reduce_mean(smooth_l1(residual)) + tf.reduce_mean(log_barrier(predictions))

grads = tape.gradient(loss, [weights])
