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


# --------------------------------------------------------------------------- the gradient path
FINE_PATH = [
    pytest.param(
        ("TF101", "TF103", "TF113", "TF118"),
        """
        import tensorflow as tf

        boxes = tf.Variable([[0.0, 0.0, 0.5, 0.5], [0.1, 0.1, 0.1, 0.1]])
        with tf.GradientTape() as tape:
            h = boxes[:, 2] - boxes[:, 0]
            w = boxes[:, 3] - boxes[:, 1]
            level = tf.math.log(tf.sqrt(h * w) / 0.25) / tf.math.log(2.0)
            level = tf.maximum(2, 4 + tf.cast(tf.round(level), tf.int32))
            mask = tf.equal(level, 3)
            picked = tf.boolean_mask(boxes, mask)
            loss = tf.reduce_sum(picked)
        """,
        id="level-only-selects-by-integer-index",
    ),
    pytest.param(
        ("TF101",),
        """
        import tensorflow as tf

        x = tf.Variable([0.4, 1.6])
        with tf.GradientTape() as tape:
            hard = tf.round(x)
            y = tf.stop_gradient(hard - x) + x
        g = tape.gradient(y, x)
        """,
        id="rounded-value-only-enters-stop-gradient",
    ),
    pytest.param(
        ("TF101",),
        """
        import tensorflow as tf

        def smooth_floor(v, k=10.0):
            return tf.floor(v) + tf.sigmoid(k * (v - tf.floor(v) - 0.5))

        x = tf.Variable([0.4, 1.6])
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(smooth_floor(x))
        g = tape.gradient(y, x)
        """,
        id="floor-beside-its-fractional-part",
    ),
    pytest.param(
        ("TF101",),
        """
        import tensorflow as tf

        x = tf.Variable([0.4, 1.6])
        with tf.GradientTape() as tape:
            tf.print("bins", tf.floor(x * 4.0))
            tf.summary.scalar("rounded", tf.reduce_sum(tf.round(x)))
            tf.debugging.assert_all_finite(tf.floor(x), "floor")
            y = tf.reduce_sum(x * x)
        g = tape.gradient(y, x)
        """,
        id="rounded-value-only-printed-or-asserted",
    ),
]

BUGS_PATH = [
    pytest.param(
        "TF101",
        """
        import tensorflow as tf

        x = tf.Variable([0.4, 1.6])
        with tf.GradientTape() as tape:
            q = tf.nn.softmax(x)
            y = tf.round(q) * tf.reduce_max(x) + tf.reduce_min(x)
        g = tape.gradient(y, x)
        """,
        id="rounded-softmax-cut-while-other-paths-flow",
    ),
    pytest.param(
        "TF118",
        """
        import tensorflow as tf

        x = tf.Variable([0.0, 1.0])
        with tf.GradientTape() as tape:
            level = tf.math.log(x)
            idx = tf.cast(tf.round(level), tf.int32)
            loss = tf.reduce_sum(level) + tf.cast(idx[0], tf.float32)
        """,
        id="log-that-also-feeds-the-loss",
    ),
    pytest.param(
        "TF101",
        """
        import tensorflow as tf

        x = tf.Variable([0.4, 1.6])
        with tf.GradientTape() as tape:
            # check_numerics returns what it checks: the rounded value goes on into the loss
            q = tf.debugging.check_numerics(tf.floor(x * 4.0), "bins")
            y = tf.reduce_sum(q * x)
        g = tape.gradient(y, x)
        """,
        id="rounded-value-through-check-numerics",
    ),
]


@pytest.mark.parametrize("selected, source", FINE_PATH)
def test_value_off_the_gradient_path_is_not_reported(selected, source):
    assert [codes(source, code) for code in selected] == [[] for _ in selected]


@pytest.mark.parametrize("code, source", BUGS_PATH)
def test_value_on_the_gradient_path_is_reported(code, source):
    assert codes(source, code) == [code]


# --------------------------------------------------------------------------- the gradient target
def test_target_started_before_and_accumulated_in_the_block_is_recorded():
    source = """
    import tensorflow as tf

    w = tf.Variable([1.0, 2.0])
    loss = 0
    with tf.GradientTape() as tape:
        for step in range(3):
            loss += tf.reduce_sum(w * float(step))
    g = tape.gradient(loss, w)
    """
    assert codes(source, "TF117") == []


def test_target_computed_before_the_block_is_reported():
    source = """
    import tensorflow as tf

    w = tf.Variable([1.0, 2.0])
    loss = tf.reduce_sum(w)
    with tf.GradientTape() as tape:
        other = w * 2.0
    g = tape.gradient(loss, w)
    """
    assert codes(source, "TF117") == ["TF117"]


# --------------------------------------------------------------------------- code that means the failure
def test_integer_source_whose_none_gradient_a_test_asserts_is_not_reported():
    source = """
    import tensorflow as tf

    class ShapeTest:
        def test_shape_has_no_gradient(self):
            scale = tf.Variable(1.5)
            reps = tf.Variable([2, 3])
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(tf.tile([scale], [reps[0]]))
            grads = tape.gradient(y, [scale, reps])
            self.assertIsNotNone(grads[0])
            self.assertIs(grads[-1], None)
    """
    assert codes(source, "TF111") == []


def test_integer_source_whose_gradient_is_used_is_reported():
    source = """
    import tensorflow as tf

    class ShapeTest:
        def test_shape_gradient(self):
            scale = tf.Variable(1.5)
            reps = tf.Variable([2, 3])
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(tf.tile([scale], [reps[0]]))
            grads = tape.gradient(y, [scale, reps])
            self.assertIs(grads[0], None)
            self.assertAllEqual(grads[1], [0, 0])
    """
    assert codes(source, "TF111") == ["TF111"]


def test_integer_constant_of_the_cell_above_is_reported():
    source = """
    import tensorflow as tf

    x = tf.constant(2.0)
    with tf.GradientTape() as g:
        g.watch(x)
        y = x * x
    print(g.gradient(y, x))

    x = tf.constant(7)
    with tf.GradientTape() as g:
        g.watch(x)
        y = x * x
    print(g.gradient(y, x))
    """
    assert codes(source, "TF111") == ["TF111"]


def test_op_without_gradient_whose_lookup_error_is_caught_is_not_reported():
    source = """
    import tensorflow as tf

    img = tf.Variable([[[0.2, 0.4, 0.6]]])
    with tf.GradientTape() as tape:
        out = tf.image.adjust_saturation(img, 2.0)
    try:
        tape.gradient(out, img)
        raise AssertionError("expected no gradient")
    except LookupError as err:
        print(err)
    """
    assert codes(source, "TF123") == []


def test_op_without_gradient_in_a_training_step_is_reported():
    source = """
    import tensorflow as tf

    img = tf.Variable([[[0.2, 0.4, 0.6]]])
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(tf.image.adjust_saturation(img, 2.0))
    try:
        grads = tape.gradient(out, img)
    except ValueError:
        grads = None
    """
    assert codes(source, "TF123") == ["TF123"]


# --------------------------------------------------------------------------- branches a tape never runs
PREDICT_BRANCH = """
import tensorflow as tf

net = tf.keras.Sequential([tf.keras.layers.Dense(2)])

def render(model, rays, train=True):
    if train:
        out = model(rays)
    else:
        out = model.predict(rays)
    return tf.reduce_sum(out)

def train_step(rays):
    with tf.GradientTape() as tape:
        loss = render(net, rays{flag})
    return tape.gradient(loss, net.trainable_variables)

def preview(rays):
    return render(net, rays, train=False)
"""


def test_predict_on_a_branch_only_inference_takes_is_not_reported():
    assert codes(PREDICT_BRANCH.format(flag=""), "TF109") == []


def test_predict_on_a_branch_the_tape_takes_is_reported():
    assert codes(PREDICT_BRANCH.format(flag=", train=False"), "TF109") == ["TF109"]


def test_rounding_that_rebinds_its_own_argument_is_reported():
    source = """
    import tensorflow as tf

    def rounded_loss(y_true, y_pred):
        y_pred = tf.math.round(y_pred)
        return tf.reduce_mean(tf.square(y_true - y_pred))

    w = tf.Variable([[0.5]])
    x = tf.ones((4, 1))
    with tf.GradientTape() as tape:
        loss = rounded_loss(x * 2.0, tf.matmul(x, w))
    g = tape.gradient(loss, w)
    """
    assert codes(source, "TF101") == ["TF101"]


def test_rounding_beside_an_earlier_sum_of_other_values_is_reported():
    source = """
    import numpy as np
    import tensorflow as tf

    x = tf.Variable(1.0)
    y = tf.Variable(2.0)
    z = x + y

    x = tf.Variable(3.7)
    with tf.GradientTape() as tape:
        y = np.floor(x)
    grad = tape.gradient(y, x)
    """
    assert codes(source, "TF101") == ["TF101"]


def test_rounding_beside_its_fractional_part_in_the_same_line_is_not_reported():
    source = """
    import tensorflow as tf

    def smooth_round(v, k=10.0):
        return tf.sigmoid(k * (v - tf.round(v))) + tf.round(v) - 0.5

    x = tf.Variable([0.4, 1.6])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(smooth_round(x))
    g = tape.gradient(y, x)
    """
    assert codes(source, "TF101") == []
