"""Idioms tapefix reports but does not rewrite, because only a person can choose the fix.

- `tf.argmax` makes the target depend on the logits only through an integer: its gradient is None.
- A running total kept in a `tf.Variable` with `assign_add`: the tape does not record assignments.
- A SciPy-style rank computed through `tf.numpy_function`: it has no gradient.
"""

import numpy as np
import tensorflow as tf

logits = tf.Variable([[2.0, 1.0, 0.5], [0.1, 0.3, 3.0]])
total = tf.Variable(0.0)


def ranks(values):
    return np.argsort(np.argsort(values)).astype(np.float32)


with tf.GradientTape(persistent=True) as tape:
    predicted = tf.argmax(logits, axis=1)
    hits = tf.cast(predicted, tf.float32)
    total.assign_add(tf.reduce_sum(logits))
    rank = tf.numpy_function(ranks, [logits], tf.float32)
    loss = tf.reduce_sum(hits) + total + tf.reduce_sum(rank)

grads = [tape.gradient(hits, logits), tape.gradient(rank, logits)]
