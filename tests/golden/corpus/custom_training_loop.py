"""A small Keras regression model trained with a custom loop, a quantised output head and a
relative-error loss: three gradient cuts in one realistic training step."""

import numpy as np
import tensorflow as tf

tf.keras.utils.set_random_seed(7)

model = tf.keras.Sequential(
    [
        tf.keras.Input(shape=(3,)),
        tf.keras.layers.Dense(8, activation="tanh"),
        tf.keras.layers.Dense(1),
    ]
)
optimizer = tf.keras.optimizers.SGD(learning_rate=0.01)

inputs = np.linspace(-1.0, 1.0, 24, dtype=np.float32).reshape(8, 3)
targets = np.array([[0.5], [1.5], [2.0], [0.25], [1.0], [3.0], [0.75], [2.5]], dtype=np.float32)


def relative_error(pred, target):
    return tf.abs(pred - target) / target


def train_step(x, y):
    with tf.GradientTape() as tape:
        pred = model(x, training=True)
        levels = (tf.stop_gradient(tf.round(pred * 4.0)) + (pred * 4.0 - tf.stop_gradient(pred * 4.0))) / 4.0  # the deployed model emits quarter steps
        pred = tf.where(pred > 0.0, levels, levels * 0.5)
        loss = tf.reduce_mean(relative_error(pred, y))
    grads = tape.gradient(loss, model.trainable_variables)
    return loss, grads


loss, grads = train_step(inputs, targets)
