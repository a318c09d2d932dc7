"""TF115's fix of ``v = tf.Variable(expr)`` in a tape: offered only when ``v`` is read as a value and
nothing else; the fixed program keeps its forward values and gets the gradient (run under TensorFlow)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tapefix import Config, check_source, fix_source

CONFIG = Config(select=("TF115",), unsafe_fixes=True)

HEAD = """\
import tensorflow as tf

x = tf.Variable(3.0)
with tf.GradientTape() as tape:
    v = tf.Variable(x * x)
"""

#: how ``v`` is used after ``v = tf.Variable(x * x)`` in the block -> whether the fix is offered
USES = {
    "arithmetic and a tf op": ("    loss = tf.reduce_sum(v * 2.0) + tf.square(v)\ng = tape.gradient(loss, x)\n", True),
    "the gradient target": ("g = tape.gradient(v, x)\n", True),
    "a comparison and a shape": (
        "    loss = tf.where(v > 1.0, v, 0.0) + float(len(v.shape))\ng = tape.gradient(loss, x)\n",
        True,
    ),
    "assigned": ("    v.assign(1.0)\n    loss = v * 2.0\ng = tape.gradient(loss, x)\n", False),
    "trainable": ("    loss = v * 2.0 if v.trainable else x\ng = tape.gradient(loss, x)\n", False),
    "a source": ("    loss = v * 2.0\ng = tape.gradient(loss, [x, v])\n", False),
    "a watched source": ("    tape.watch(v)\n    loss = v * 2.0\ng = tape.gradient(loss, x)\n", False),
    "an optimizer": (
        "    loss = v * 2.0\ng = tape.gradient(loss, x)\ntf.keras.optimizers.SGD().apply_gradients([(g, v)])\n",
        False,
    ),
    "collected": ("    state = []\n    state.append(v)\n    loss = v * 2.0\ng = tape.gradient(loss, x)\n", False),
    "another name read as a value": ("    w = v\n    loss = w * 2.0\ng = tape.gradient(loss, x)\n", True),
    "another name used as a source": ("    w = v\n    loss = w * 2.0\ng = tape.gradient(loss, [x, w])\n", False),
    "another name bound twice": ("    w = v\n    w = x\n    loss = w * 2.0\ng = tape.gradient(loss, x)\n", False),
    "names bound to each other": ("    w = v\n    u = w\n    u.assign(0.0)\ng = tape.gradient(v, x)\n", False),
    "rebound as a variable": ("    loss = v * 2.0\nv = tf.Variable(0.0)\ng = tape.gradient(loss, x)\n", False),
}


@pytest.mark.parametrize("tail, offered", list(USES.values()), ids=list(USES))
def test_fix_offered_only_for_a_value(tail, offered):
    source = HEAD + tail
    findings = [f for f in check_source(source, CONFIG) if "tf.Variable created" in f.message]
    assert len(findings) == 1
    assert (findings[0].fix is not None) is offered, findings[0]
    fixed = fix_source(source, CONFIG).fixed_source
    assert ("    v = x * x\n" in fixed) is offered


def test_variable_with_a_dtype_is_not_rewritten():
    source = HEAD.replace("tf.Variable(x * x)", "tf.Variable(x * x, trainable=False)") + "g = tape.gradient(v, x)\n"
    (finding,) = check_source(source, CONFIG)
    assert finding.fix is None


_PROBE = """\
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
namespace = {}
exec(compile(sys.stdin.read(), "example.py", "exec"), namespace)
loss, g = namespace["loss"], namespace["g"]
print(repr(loss.numpy().tolist()), loss.dtype.name, None if g is None else repr(g.numpy().tolist()))
"""


@pytest.mark.tf
@pytest.mark.slow
def test_fixed_program_keeps_forward_values_and_gets_the_gradient():
    pytest.importorskip("tensorflow")
    source = """\
import tensorflow as tf

w = tf.Variable([1.0, -2.0])
b = tf.Variable(0.5)
with tf.GradientTape() as tape:
    h = tf.Variable(tf.tanh(w) + b)
    loss = tf.reduce_sum(h * h) / 2.0
g = tape.gradient(loss, w)
"""
    fixed = fix_source(source, CONFIG).fixed_source
    assert "    h = tf.tanh(w) + b\n" in fixed

    def run(text):
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], input=text, capture_output=True, text=True, timeout=300, check=True
        )
        return done.stdout.strip().splitlines()[-1].split(" ", 2)

    before, after = run(source), run(fixed)
    assert before[:2] == after[:2]  # forward value and dtype, exactly
    assert before[2] == "None" and after[2] != "None"
