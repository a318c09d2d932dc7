"""A saliency map: the gradient of a class score with respect to the input image.

The image is a `tf.constant`, which the tape does not watch, so its gradient is None; the score is
reduced after the `with` block, where nothing is recorded; and the second gradient call on the same
non-persistent tape raises `RuntimeError`.
"""

import tensorflow as tf

tf.keras.utils.set_random_seed(5)

classifier = tf.keras.Sequential([tf.keras.Input(shape=(4,)), tf.keras.layers.Dense(3)])
image = tf.constant([[0.2, -0.4, 0.9, 0.1]])

with tf.GradientTape(persistent=True) as tape:
    tape.watch(image)
    logits = classifier(image)
    score = logits[:, 1]

saliency = tape.gradient(score, image)
weight_grads = tape.gradient(score, classifier.trainable_variables)

loss = score
grads = [saliency, *weight_grads]
