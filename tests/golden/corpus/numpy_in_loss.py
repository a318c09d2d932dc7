"""A regression loss written half in NumPy, as people port it from a NumPy prototype.

Every NumPy call, `.numpy()` and `model.predict` inside the tape hands back a NumPy value: the
tape records nothing through it, and `tape.gradient` returns None for every weight.
"""

import numpy as np
import tensorflow as tf

tf.keras.utils.set_random_seed(3)

model = tf.keras.Sequential([tf.keras.Input(shape=(2,)), tf.keras.layers.Dense(1)])
features = np.array([[0.5, -1.0], [1.5, 2.0], [-0.5, 0.25], [2.0, 1.0]], dtype=np.float32)
labels = np.array([[1.0], [0.0], [0.5], [2.0]], dtype=np.float32)

with tf.GradientTape() as tape:
    pred = model(features, training=False)
    error = pred - labels
    loss = tf.reduce_mean(tf.square(error))

grads = tape.gradient(loss, model.trainable_variables)
