"""TF102 on a helper's ``if`` reached through calls, TF102 with TF101 in one branch, and TF101 on floor
division: the fixed programs are checked as text here and run under TensorFlow (marked ``tf``)."""

from __future__ import annotations

import pytest

from tapefix import Config, check_source, fix_source

HELPER_WITH_FLOOR = """\
import numpy as np
import tensorflow as tf

def quantised(v):
    if v > 0.5:
        return np.floor(v * 4.0) / 4.0
    return v

def my_loss(t, p):
    return tf.reduce_mean(quantised(tf.abs(t - p)))

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
xs, ys = tf.random.normal((8, 3), seed=1), tf.random.normal((8, 1), seed=2)
with tf.GradientTape() as tape:
    pred = model(xs)
    loss = my_loss(ys, pred)
grads = tape.gradient(loss, model.trainable_variables)
"""

UNSAFE = Config(unsafe_fixes=True)


def test_a_helper_if_reached_through_two_calls_is_flagged_and_both_fixes_compose() -> None:
    codes = sorted(f.code for f in check_source(HELPER_WITH_FLOOR))
    assert codes == ["TF101", "TF102"]
    fixed = fix_source(HELPER_WITH_FLOOR, UNSAFE).fixed_source
    assert "if v > 0.5" not in fixed and "np.floor" not in fixed
    assert (
        "    return tf.where(v > 0.5, (tf.stop_gradient(tf.floor(v * 4.0)) + (v * 4.0 - tf.stop_gradient(v * 4.0)))"
        " / 4.0, v)\n" in fixed
    )


def test_a_helper_if_on_a_scalar_passed_through_a_helper_is_left_alone() -> None:
    source = HELPER_WITH_FLOOR.replace("np.floor(v * 4.0) / 4.0", "v * 0.5").replace(
        "tf.reduce_mean(quantised(tf.abs(t - p)))", "quantised(tf.reduce_mean(tf.abs(t - p)))"
    )
    assert [f.code for f in check_source(source)] == []


@pytest.mark.tf
def test_the_composed_fix_runs_and_gives_every_gradient() -> None:
    import numpy as np
    import tensorflow as tf

    with pytest.raises(ValueError, match="truth value of an array with more than one element"):
        exec(compile(HELPER_WITH_FLOOR, "before.py", "exec"), {})
    namespace: dict = {}
    exec(compile(fix_source(HELPER_WITH_FLOOR, UNSAFE).fixed_source, "after.py", "exec"), namespace)
    grads = namespace["grads"]
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    # Forward: the per-element Python if, lane by lane.
    v = np.abs(namespace["ys"].numpy() - namespace["pred"].numpy()).ravel()
    expected = np.where(v > 0.5, np.floor(v * 4.0) / 4.0, v).astype(np.float32)
    fixed_quantised = namespace["quantised"]
    assert np.array_equal(fixed_quantised(tf.constant(v)).numpy(), expected)


@pytest.mark.tf
def test_floor_division_fix_keeps_forward_values_and_takes_the_gradient_of_the_quotient() -> None:
    import numpy as np
    import tensorflow as tf

    source = """\
import tensorflow as tf

x = tf.Variable([7.5, -3.2, 1.0, 0.0, -0.4])
y = tf.Variable([2.0, 1.5, 0.3, -2.0, 0.7])
with tf.GradientTape(persistent=True) as tape:
    q = tf.math.floordiv(x, y)
    r = x // y
"""
    before: dict = {}
    exec(compile(source, "before.py", "exec"), before)
    assert before["tape"].gradient(before["q"], [before["x"], before["y"]]) == [None, None]
    assert before["tape"].gradient(before["r"], [before["x"], before["y"]]) == [None, None]
    after: dict = {}
    exec(compile(fix_source(source, UNSAFE).fixed_source, "after.py", "exec"), after)
    x, y, tape = after["x"], after["y"], after["tape"]
    with tf.GradientTape() as reference:
        quotient = x / y
    expected = reference.gradient(quotient, [x, y])
    for name in ("q", "r"):
        # equal values; a -0.0 quotient comes back as 0.0
        assert np.array_equal(after[name].numpy(), before[name].numpy())
        got = tape.gradient(after[name], [x, y])
        assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(got, expected))
