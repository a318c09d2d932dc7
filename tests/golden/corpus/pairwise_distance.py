"""Contrastive embedding loss on pairwise Euclidean distances.

Two embeddings of different classes that coincide give a distance of exactly 0, where `tf.sqrt`
has an infinite gradient and the margin term pushes on it: the whole update becomes NaN. (A
coincident pair of the same class is harmless on TF 2.21: its upstream gradient is 0, and TF's
square-root gradient returns 0 then.)
"""

import tensorflow as tf

embeddings = tf.Variable([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])  # rows 0 and 1 coincide
same_class = tf.constant([0.0, 1.0, 0.0])  # pairs (0, 1), (0, 2), (1, 2)
margin = 1.5

with tf.GradientTape() as tape:
    a = tf.gather(embeddings, [0, 0, 1])
    b = tf.gather(embeddings, [1, 2, 2])
    radicand = tf.reduce_sum(tf.square(a - b), axis=1)
    distance = tf.where(radicand > 0, tf.sqrt(tf.where(radicand > 0, radicand, 1.0)), 0.0)
    sum_of_squares = tf.reduce_sum(tf.square(embeddings - tf.reduce_mean(embeddings, axis=0)))
    spread = tf.where(sum_of_squares > 0, tf.sqrt(tf.where(sum_of_squares > 0, sum_of_squares, 1.0)), 0.0)
    pull = same_class * distance ** 2
    push = (1.0 - same_class) * tf.square(tf.maximum(margin - distance, 0.0))
    loss = tf.reduce_mean(pull + push) + 0.01 * spread

grads = tape.gradient(loss, [embeddings])
