"""Precision: idioms that are correct code and must not be reported, each beside the nearest idiom
that is a real bug and must stay reported. Each case names the fact tapefix has to get right."""

from __future__ import annotations

import textwrap

import pytest

from tapefix import Config, check_source


def codes(source: str, select: str) -> list:
    config = Config(select=(select,))
    return [f.code for f in check_source(textwrap.dedent(source), config)]


# --------------------------------------------------------------------------- value facts: can it be 0?
FINE_VALUES = [
    pytest.param(
        "TF103",
        """
        import tensorflow as tf

        def moments(x, eps=1e-5):
            mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
            return mean, tf.sqrt(var + eps)

        def renorm(x, y):
            x_mean, x_std = moments(x)
            return (x - x_mean) / x_std

        feats = tf.Variable(tf.ones([1, 4, 4, 3]))
        with tf.GradientTape() as tape:
            out = renorm(feats, feats)
        """,
        id="helper-returns-sqrt-plus-eps",
    ),
    pytest.param(
        "TF103",
        """
        import tensorflow as tf

        logits = tf.Variable([[0.5, 1.0, -2.0]])
        with tf.GradientTape() as tape:
            p = tf.nn.softmax(logits)
            q = tf.nn.softmax(logits * 2.0)
            ratio = tf.reduce_mean(p) / tf.reduce_mean(q)
        """,
        id="mean-of-softmax",
    ),
    pytest.param(
        "TF113",
        """
        import tensorflow as tf

        a = tf.Variable([1.0, 2.0])
        b = tf.constant([1.0, 2.0])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.sqrt(tf.square(a - b) + tf.square(1e-3)))
        """,
        id="charbonnier-square-of-constant",
    ),
    pytest.param(
        "TF103",
        """
        import tensorflow as tf

        x = tf.Variable(0.0)
        y = x * 3.0

        x = tf.Variable(4.0)
        with tf.GradientTape() as tape:
            z = 1 / x
        """,
        id="variable-literal-two-lines-above",
    ),
    pytest.param(
        "TF118",
        """
        import tensorflow as tf

        x = tf.constant([0.5, 1.5, 2.5])
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.math.log(x)
        """,
        id="positive-literal-constant",
    ),
    pytest.param(
        "TF118",
        """
        import numpy as np
        import tensorflow as tf

        net = tf.keras.Sequential([tf.keras.layers.Dense(3, activation="softmax")])
        state = tf.ones((1, 4))
        with tf.GradientTape() as tape:
            probs = net(state)
            action = np.random.choice(3, p=np.squeeze(probs))
            log_prob = tf.math.log(probs[0, action])
        """,
        id="log-prob-of-action-sampled-from-it",
    ),
    pytest.param(
        "TF113",
        """
        import tensorflow as tf

        u = tf.random.normal((3, 3))
        v = tf.random.normal((3, 3))
        with tf.GradientTape() as tape:
            tape.watch(u)
            r = tf.sqrt(tf.square(u) + tf.square(v))
        """,
        id="radius-of-two-independent-draws",
    ),
    pytest.param(
        "TF113",
        """
        import tensorflow as tf

        z0 = tf.random.normal([1, 128])

        def search(start):
            z = tf.Variable(start)
            opt = tf.keras.optimizers.Adam(0.01)
            for _ in range(5):
                with tf.GradientTape() as tape:
                    loss = tf.abs(tf.norm(z) - 11.3)
                opt.apply_gradients(zip(tape.gradient(loss, [z]), [z]))

        search(z0)
        """,
        id="norm-of-a-vector-started-from-a-draw",
    ),
]

BUGS_VALUES = [
    pytest.param(
        "TF113",
        """
        import tensorflow as tf

        img = tf.Variable(tf.zeros([1, 8, 8, 3]))
        with tf.GradientTape() as tape:
            m = tf.reduce_mean(img, axis=[1, 2])
            dr = m[:, 0] - m[:, 1]
            dg = m[:, 1] - m[:, 2]
            loss = tf.sqrt(tf.square(dr) + tf.square(dg))
        """,
        id="differences-of-channel-means-can-all-vanish",
    ),
    pytest.param(
        "TF103",
        """
        import tensorflow as tf

        x = tf.Variable(4.0)
        x = tf.Variable(0.0)
        with tf.GradientTape() as tape:
            z = 1 / x
        """,
        id="variable-rebound-to-zero",
    ),
    pytest.param(
        "TF103",
        """
        import tensorflow as tf

        w = tf.Variable(2.0)
        opt = tf.keras.optimizers.SGD(1.0)
        for _ in range(3):
            with tf.GradientTape() as tape:
                loss = 1 / w
            opt.apply_gradients(zip(tape.gradient(loss, [w]), [w]))
        """,
        id="trained-variable-may-reach-zero",
    ),
    pytest.param(
        "TF103",
        """
        import tensorflow as tf

        u = tf.random.normal((1000,))
        with tf.GradientTape() as tape:
            tape.watch(u)
            y = 1.0 / u
        """,
        id="one-draw-can-be-exactly-zero",
    ),
    pytest.param(
        "TF113",
        """
        import tensorflow as tf

        u = tf.random.normal((3,))
        with tf.GradientTape() as tape:
            tape.watch(u)
            r = tf.sqrt(tf.square(u) + tf.square(u))
        """,
        id="same-draw-twice-is-one-draw",
    ),
    pytest.param(
        "TF118",
        """
        import tensorflow as tf

        def helper(x):
            return tf.sqrt(x)

        w = tf.Variable([0.0, 1.0])
        with tf.GradientTape() as tape:
            y = tf.math.log(helper(w))
        """,
        id="helper-returns-sqrt-without-eps",
    ),
    pytest.param(
        "TF118",
        """
        import numpy as np
        import tensorflow as tf

        net = tf.keras.Sequential([tf.keras.layers.Dense(3, activation="softmax")])
        state = tf.ones((1, 4))
        with tf.GradientTape() as tape:
            probs = net(state)
            action = np.random.randint(3)
            log_prob = tf.math.log(probs[0, action])
        """,
        id="log-prob-of-action-drawn-elsewhere",
    ),
]


@pytest.mark.parametrize("code, source", FINE_VALUES)
def test_value_that_cannot_be_zero_is_not_reported(code, source):
    assert codes(source, code) == []


@pytest.mark.parametrize("code, source", BUGS_VALUES)
def test_value_that_can_be_zero_is_reported(code, source):
    assert codes(source, code) == [code]
