"""How a fix reads: a value it would repeat is bound once to a fresh name on the line above the statement
(RuleContext.bind_above), with the statement's indentation and the module's line endings; where no line
can go above, the fix falls back to the in-place form. TF121's double-where is the example."""

from __future__ import annotations

import pytest

from tapefix import Config, fix_source

UNSAFE = Config(unsafe_fixes=True)
HEADER = "import tensorflow as tf\n\nx = tf.Variable([2.0, 2.0, 2.0])\n"
IN_PLACE = (
    "tf.where(tf.math.reduce_variance(x) > 0, tf.sqrt(tf.where(tf.math.reduce_variance(x) > 0, "
    "tf.math.reduce_variance(x), 1.0)), tf.math.reduce_variance(x))"
)
BOUND = "tf.where({v} > 0, tf.sqrt(tf.where({v} > 0, {v}, 1.0)), {v})"


def fixed(body: str, newline: str = "\n") -> str:
    source = (HEADER + body).replace("\n", newline)
    return fix_source(source, UNSAFE).fixed_source


def test_the_repeated_value_is_bound_on_the_line_above() -> None:
    body = "with tf.GradientTape() as tape:\n    # the spread\n    spread = tf.math.reduce_std(x) * 2.0\n"
    assert fixed(body) == HEADER + (
        "with tf.GradientTape() as tape:\n    # the spread\n    variance = tf.math.reduce_variance(x)\n"
        f"    spread = {BOUND.format(v='variance')} * 2.0\n"
    )


def test_the_name_does_not_clash_with_any_name_of_the_module() -> None:
    body = "variance = 3\nwith tf.GradientTape() as tape:\n    spread = tf.math.reduce_std(x) + variance\n"
    assert fixed(body) == HEADER + (
        "variance = 3\nwith tf.GradientTape() as tape:\n    variance_2 = tf.math.reduce_variance(x)\n"
        f"    spread = {BOUND.format(v='variance_2')} + variance\n"
    )


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_line_endings_and_tabs_are_kept(newline: str) -> None:
    body = "with tf.GradientTape() as tape:\n\tspread = tf.math.reduce_std(x)\n"
    expected = HEADER + (
        "with tf.GradientTape() as tape:\n\tvariance = tf.math.reduce_variance(x)\n"
        f"\tspread = {BOUND.format(v='variance')}\n"
    )
    assert fixed(body, newline) == expected.replace("\n", newline)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            "with tf.GradientTape() as tape:\n    f = lambda: tf.math.reduce_std(x)\n    s = f()\n", id="lambda"
        ),
        pytest.param(
            "with tf.GradientTape() as tape:\n    s = [tf.math.reduce_std(x) for _ in range(2)]\n", id="comprehension"
        ),
        pytest.param(
            "with tf.GradientTape() as tape:\n    s = tf.math.reduce_std(x) if True else x\n", id="conditional"
        ),
        pytest.param("with tf.GradientTape() as tape:\n    a = 1; s = tf.math.reduce_std(x)\n", id="two-statements"),
        pytest.param("with tf.GradientTape() as tape:\n    if True: s = tf.math.reduce_std(x)\n", id="one-line-block"),
    ],
)
def test_where_no_line_can_go_above_the_value_is_written_in_place(body: str) -> None:
    assert fixed(body) == HEADER + body.replace("tf.math.reduce_std(x)", IN_PLACE)


def test_a_long_where_condition_is_named_once_for_the_double_where() -> None:
    body = (
        "with tf.GradientTape() as tape:\n"
        "    y = tf.where(tf.reduce_sum(x * x) > 0.0, tf.math.log(tf.reduce_sum(x * x)), 0.0)\n"
        "    z = tf.where(x > 0, tf.math.log(x), 0.0)\n"
    )
    assert fixed(body) == HEADER + (
        "with tf.GradientTape() as tape:\n"
        "    mask = tf.reduce_sum(x * x) > 0.0\n"
        "    y = tf.where(mask, tf.math.log(tf.where(mask, tf.reduce_sum(x * x), 1.0)), 0.0)\n"
        "    z = tf.where(x > 0, tf.math.log(tf.where(x > 0, x, 1.0)), 0.0)\n"
    )
