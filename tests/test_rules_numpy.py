"""TF104-TF109 beyond their examples: per-fix safety and forward contracts, where values go, precision
on an ordinary training loop. No TensorFlow here (tests/test_rules_numpy_tf.py runs the fixes)."""

from __future__ import annotations

import textwrap

import pytest

from tapefix import Config, check_source, fix_source
from tapefix.analysis.tfops import EXACT_NUMPY
from tapefix.rules.numpy_on_tensor import OPS
from tapefix.types import Forward

CODES = ("TF104", "TF105", "TF106", "TF107", "TF108", "TF109")
HEADER = "import math\nimport numpy as np\nimport tensorflow as tf\n\nx = tf.Variable([1.0, 2.0])\n"


def _module(body: str, after: str = "grads = tape.gradient(loss, x)\n") -> str:
    return HEADER + "with tf.GradientTape() as tape:\n" + textwrap.indent(textwrap.dedent(body), "    ") + after


def _fixes(source: str):
    return [
        (f.code, f.fix.safety.value, f.fix.forward.value) if f.fix else (f.code, None, None)
        for f in check_source(source, Config(select=CODES))
    ]


@pytest.mark.parametrize(
    "body, expected",
    [
        pytest.param("loss = tf.reduce_sum(np.square(x))\n", [("TF104", "safe", "exact")], id="exact-op-into-tf"),
        pytest.param("loss = tf.reduce_sum(np.exp(x))\n", [("TF104", "unsafe", "ulp")], id="transcendental"),
        pytest.param("loss = tf.reduce_sum(np.abs(x) ** 3)\n", [("TF104", "unsafe", "ulp")], id="numpy-power-after"),
        pytest.param("loss = tf.reduce_sum(np.clip(x, 0.0, 1.5))\n", [("TF104", "safe", "exact")], id="ordered-bounds"),
        pytest.param("loss = tf.reduce_sum(np.clip(x, 2.0, 1.0))\n", [("TF104", "unsafe", "exact")], id="inverted"),
        pytest.param("loss = tf.reduce_sum(np.where(m, x, 0.0))\n", [("TF104", "unsafe", "exact")], id="where-name"),
        pytest.param(
            "loss = tf.reduce_sum(np.maximum(x, np.ones(2)))\n", [("TF104", "unsafe", "exact")], id="numpy-operand"
        ),
        pytest.param("loss = tf.reduce_sum(x.numpy())\n", [("TF105", "safe", "exact")], id="conversion"),
        pytest.param(
            "loss = tf.reduce_sum(np.square(x) + x)\n", [("TF104", "unsafe", "exact")], id="partial-gradient-before"
        ),
        pytest.param(
            "loss = tf.reduce_sum(x.numpy() * x)\n", [("TF105", "unsafe", "exact")], id="conversion-meets-gradient"
        ),
        pytest.param(
            "y = x.numpy()\nprint(y)\nloss = tf.reduce_sum(y)\n", [("TF105", "unsafe", "exact")], id="also-printed"
        ),
        pytest.param("loss = tf.reduce_sum(x.numpy() ** 2)\n", [("TF105", "unsafe", "ulp")], id="numpy-power"),
        pytest.param(
            "s = tf.reduce_sum(x)\nloss = float(s) * x\n", [("TF106", "unsafe", "exact")], id="float-times-tensor"
        ),
        pytest.param(
            "s = tf.reduce_sum(x)\nloss = float(s) * 0.1 * x\n", [("TF106", "unsafe", "ulp")], id="float64-arithmetic"
        ),
        pytest.param("loss = math.sqrt(tf.reduce_sum(x)) * x\n", [("TF107", "unsafe", "exact")], id="math-sqrt"),
        pytest.param("loss = max(x[0], 0.0) * x\n", [("TF108", "safe", "exact")], id="builtin-max"),
    ],
)
def test_each_fix_carries_its_own_safety_and_forward_contract(body, expected):
    assert _fixes(_module("m = x > 1.0\n" + body)) == expected


def test_exact_numpy_names_are_tf104s_exact_ops():
    assert EXACT_NUMPY == {name for name, (_, _, forward) in OPS.items() if forward is Forward.EXACT}


def test_a_fix_in_a_function_the_tape_calls_is_never_safe():
    source = (
        HEADER
        + "\n\ndef f(v):\n    return tf.reduce_sum(np.square(v))\n\n\n"
        + ("with tf.GradientTape() as tape:\n    loss = f(x)\ngrads = tape.gradient(loss, x)\n")
    )
    assert _fixes(source) == [("TF104", "unsafe", "exact")]


def test_safe_fixes_alone_reach_the_fixed_point_of_nested_exact_ops():
    # np.square's operand is a NumPy value until np.maximum is rewritten: safe on the second pass.
    source = _module("loss = tf.reduce_sum(np.square(np.maximum(x, 0.0)))\n")
    fixed = fix_source(source, Config(select=CODES)).fixed_source
    assert "tf.reduce_sum(tf.square(tf.maximum(x, 0.0)))" in fixed


def test_a_list_that_collects_tensors_is_on_the_path():
    collects_tensors = _module("ls = []\nls.append(x * 2.0)\nloss = tf.convert_to_tensor(np.mean(ls))\n")
    collects_numbers = _module("ls = []\nls.append(2.0)\nloss = x * tf.convert_to_tensor(np.mean(ls))\n")
    assert [f.code for f in check_source(collects_tensors, Config(select=("TF104",)))] == ["TF104"]
    assert check_source(collects_numbers, Config(select=("TF104",))) == []


@pytest.mark.parametrize(
    "body, fixed",
    [
        pytest.param("loss = tf.reduce_sum(np.array(x * 2) ** 2)\n", "tf.reduce_sum((x * 2) ** 2)", id="parenthesised"),
        pytest.param("loss = tf.reduce_sum(np.asarray(x))\n", "tf.reduce_sum(tf.identity(x))", id="variable-snapshot"),
        pytest.param(
            "y, z = (x * 2.0).numpy(), 1.0\nloss = tf.reduce_sum(y * z)\n", "y, z = (x * 2.0), 1.0", id="unpacked"
        ),
        pytest.param(
            "loss = tf.reduce_sum(np.concatenate((x, x)))\n", "tf.concat((x, x), axis=0)", id="concat-default-axis"
        ),
        pytest.param(
            "loss = tf.reduce_sum(np.sum(x, 0))\n", "tf.reduce_sum(tf.reduce_sum(x, 0))", id="positional-axis"
        ),
    ],
)
def test_rewrites(body, fixed):
    result = fix_source(_module(body), Config(select=CODES, unsafe_fixes=True)).fixed_source
    assert fixed in result


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("loss = tf.reduce_sum(np.clip(x, None, 1.0))\n", id="none-bound"),
        pytest.param("loss = tf.reduce_sum(np.linalg.norm(x, ord=1))\n", id="norm-ord"),
        pytest.param("loss = tf.reduce_sum(np.linalg.norm(x, axis=(0, 1)))\n", id="norm-matrix-axes"),
        pytest.param("loss = tf.reduce_sum(np.mean(x, out=None))\n", id="out"),
        pytest.param("loss = tf.reduce_sum(np.concatenate([x, x], axis=None))\n", id="concat-axis-none"),
        pytest.param("loss = tf.reduce_sum(np.array(x, dtype=np.float64))\n", id="array-dtype"),
        pytest.param("loss = tf.reduce_sum(np.float32(x))\n", id="numpy-scalar-type"),
        pytest.param("loss = x * math.log(tf.reduce_sum(x), 2)\n", id="math-log-base"),
        pytest.param("loss = x * math.exp(x)\n", id="math-not-scalar"),
    ],
)
def test_reported_without_a_fix(body):
    findings = check_source(_module(body), Config(select=CODES))
    assert findings and all(f.fix is None and f.no_fix_reason for f in findings)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("loss = tf.reduce_sum(x)\nlabel = np.sum(x) > 2.0\n", id="comparison"),
        pytest.param("loss = tf.reduce_sum(x)\nnp.save('x.npy', x.numpy())\n", id="written-out"),
        pytest.param("loss = tf.reduce_sum(x)\nlogging.info('%s', float(loss))\n", id="logged"),
        pytest.param("loss = tf.reduce_sum(x)\nrows = [0] * int(loss)\n", id="python-list-size"),
        pytest.param("loss = tf.reduce_sum(x)\nidx = np.argmax(x.numpy())\nloss = loss + x[idx]\n", id="index"),
        pytest.param("loss = tf.reduce_sum(x)\nnp.exp(x)\n", id="discarded"),
        pytest.param("loss = tf.reduce_sum(x) * max(1, 2)\n", id="python-numbers"),
        pytest.param("loss = tf.reduce_sum(x)\nmetric.update_state(y, model.predict(x))\n", id="predict-to-metric"),
        pytest.param("loss = tf.reduce_sum(x)\nhits = np.where(x > 1.0)\nloss = loss + x[hits[0][0]]\n", id="indices"),
    ],
)
def test_left_alone(body):
    source = "import logging\n" + _module(body)
    assert check_source(source, Config(select=CODES)) == []


def test_a_module_that_rebinds_float_is_left_alone():
    source = HEADER + "float = tf.identity\nwith tf.GradientTape() as tape:\n    loss = float(x) * x\n"
    assert check_source(source, Config(select=("TF106",))) == []


def test_an_ordinary_training_loop_has_no_findings():
    source = """\
import numpy as np
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
optimizer = tf.keras.optimizers.Adam()
loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
metric = tf.keras.metrics.SparseCategoricalAccuracy()


def train(dataset):
    history = []
    for step, (x_batch, y_batch) in enumerate(dataset):
        with tf.GradientTape() as tape:
            logits = model(x_batch, training=True)
            loss_value = loss_fn(y_batch, logits)
            labels = np.asarray(y_batch)
            n = int(tf.shape(x_batch)[0])
            weights = tf.constant(np.ones(n) / max(1, n), tf.float32)
            correct = np.sum(np.argmax(logits.numpy(), axis=-1) == labels)
            tf.print("loss", loss_value, np.mean(logits))
            history.append({"loss": float(loss_value), "acc": correct / n})
            metric.update_state(y_batch, logits.numpy())
            noise = tf.random.normal(tf.shape(logits)) * np.float32(0.1)
            loss_value += tf.reduce_mean(noise * logits * weights[0]) * np.log(2.0)
        grads = tape.gradient(loss_value, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
        print(f"step {step}: {float(loss_value):.4f}")
    return np.mean([h["loss"] for h in history])
"""
    assert check_source(source, Config(select=CODES)) == []
