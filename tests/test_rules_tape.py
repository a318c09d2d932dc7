"""The tape-bookkeeping and numerical rules (TF110-TF117) beyond their documented examples, and the
engine's dispatch of rules that look at a tape block from outside (``Rule.EVERYWHERE``)."""

from __future__ import annotations

from typing import List

import libcst as cst
import pytest

from tapefix import Config, check_source, fix_source
from tapefix.analysis.scope import ModuleAnalysis
from tapefix.engine import _dispatch
from tapefix.rule import Rule, RuleContext

HEADER = "import tensorflow as tf\n\n"


class _SeesNames(Rule):
    """Test rule: collects every Name it is called on, with whether it runs while a tape records."""

    CODE = "TF999"
    NAME = "sees-names"
    MESSAGE = "seen"
    seen: List[tuple] = []

    def visit_Name(self, node: cst.Name) -> None:
        type(self).seen.append((node.value, self.context.recording))


class _SeesNamesEverywhere(_SeesNames):
    EVERYWHERE = True


@pytest.mark.parametrize(
    "rule, expected",
    [
        pytest.param(_SeesNames, [("y", True), ("x", True)], id="recording-only"),
        pytest.param(
            _SeesNamesEverywhere,
            [("x", False), ("y", True), ("x", True), ("g", False), ("y", False), ("x", False)],
            id="everywhere",
        ),
    ],
)
def test_dispatch_calls_everywhere_rules_on_every_node(rule, expected):
    source = HEADER + "x = tf.Variable(1.0)\nwith tf.GradientTape() as tape:\n    y = x\ng = tape.gradient(y, x)\n"
    module = cst.parse_module(source)
    analysis = ModuleAnalysis(module)
    context = RuleContext(source, module, analysis)
    rule.seen = []
    _dispatch(module, context, [rule(context)])
    names = [(name, recording) for name, recording in rule.seen if name in ("x", "y", "g")]
    assert names == expected


FLAGGED = [
    pytest.param(
        "TF110",
        "x = tf.constant(1.0)\nwith tf.GradientTape(watch_accessed_variables=False) as tape:\n    y = x * 2.0\n"
        "g = tape.gradient(y, x)\n",
        "x = tf.constant(1.0)\nwith tf.GradientTape(watch_accessed_variables=False) as tape:\n    tape.watch(x)\n"
        "    y = x * 2.0\ng = tape.gradient(y, x)\n",
        id="TF110-constant",
    ),
    pytest.param(
        "TF110",
        "v = tf.Variable(1.0)\nwith tf.GradientTape(watch_accessed_variables=False) as tape:\n    y = v * 2.0\n"
        "g = tape.gradient(y, v)\n",
        "v = tf.Variable(1.0)\nwith tf.GradientTape(watch_accessed_variables=False) as tape:\n    tape.watch(v)\n"
        "    y = v * 2.0\ng = tape.gradient(y, v)\n",
        id="TF110-variable-on-a-tape-that-watches-nothing",
    ),
    pytest.param(
        "TF110",
        "x = tf.constant(1.0)\nwith tf.GradientTape() as a, tf.GradientTape() as b:\n    a.watch(x)\n    y = x * 2.0\n"
        "g = b.gradient(y, x)\n",
        "x = tf.constant(1.0)\nwith tf.GradientTape() as a, tf.GradientTape() as b:\n    b.watch(x)\n    a.watch(x)\n"
        "    y = x * 2.0\ng = b.gradient(y, x)\n",
        id="TF110-watched-by-the-other-tape",
    ),
    pytest.param(
        "TF110",
        "with tf.GradientTape() as tape:\n    x = tf.constant(1.0)\n    y = x * 2.0\ng = tape.gradient(y, x)\n",
        "with tf.GradientTape() as tape:\n    x = tf.constant(1.0)\n    tape.watch(x)\n    y = x * 2.0\n"
        "g = tape.gradient(y, x)\n",
        id="TF110-assigned-inside-the-block",
    ),
    pytest.param(
        "TF110",
        "x = tf.constant(1.0)\nwith tf.GradientTape() as tape: y = x * 2.0\ng = tape.gradient(y, x)\n",
        None,
        id="TF110-one-line-with",
    ),
    pytest.param(
        "TF111",
        "x = tf.Variable(0x10)\nwith tf.GradientTape() as tape:\n    y = x * x\ng = tape.gradient(y, x)\n",
        None,
        id="TF111-hex-literal",
    ),
    pytest.param(
        "TF112",
        "x = tf.Variable(1.0)\nwith tf.GradientTape() as tape:\n    y = x * x\nif x > 0:\n    a = tape.gradient(y, x)\n"
        "b = tape.gradient(y, x)\n",
        "x = tf.Variable(1.0)\nwith tf.GradientTape(persistent=True) as tape:\n    y = x * x\nif x > 0:\n"
        "    a = tape.gradient(y, x)\nb = tape.gradient(y, x)\n",
        id="TF112-branch-then-straight",
    ),
    pytest.param(
        "TF112",
        "x = tf.Variable(1.0)\nwith tf.GradientTape(persistent=False) as tape:\n    y = x * x\n"
        "j = tape.jacobian(y, x)\ng = tape.gradient(y, x)\n",
        "x = tf.Variable(1.0)\nwith tf.GradientTape(persistent=True) as tape:\n    y = x * x\n"
        "j = tape.jacobian(y, x)\ng = tape.gradient(y, x)\n",
        id="TF112-persistent-false",
    ),
    pytest.param(
        "TF113",
        "x = tf.Variable([1.0, 0.5])\nwith tf.GradientTape() as tape:\n"
        "    y = tf.where(x < 1.0, tf.math.acos(x), 0.0)\n",
        "x = tf.Variable([1.0, 0.5])\nwith tf.GradientTape() as tape:\n"
        "    y = tf.where(x < 1.0, tf.math.acos(tf.where(x < 1.0, x, 0.0)), 0.0)\n",
        id="TF113-acos-trap-takes-zero",
    ),
    pytest.param(
        "TF113",
        "a = tf.Variable([1.0])\nb = tf.Variable([1.0])\nwith tf.GradientTape() as tape:\n"
        "    d = tf.sqrt((a - b) ** 2)\n",
        "a = tf.Variable([1.0])\nb = tf.Variable([1.0])\nwith tf.GradientTape() as tape:\n"
        "    radicand = (a - b) ** 2\n"
        "    d = tf.where(radicand > 0, tf.sqrt(tf.where(radicand > 0, radicand, 1.0)), 0.0)\n",
        id="TF113-sqrt-of-a-square",
    ),
    pytest.param(
        "TF113",
        "x = tf.Variable([0.0])\nwith tf.GradientTape() as tape:\n    y = 2.0 * x ** (1 / 3)\n",
        "x = tf.Variable([0.0])\nwith tf.GradientTape() as tape:\n"
        "    y = 2.0 * tf.where(x > 0, tf.where(x > 0, x, 1.0) ** (1 / 3), 0.0)\n",
        id="TF113-cube-root",
    ),
    pytest.param(
        "TF117",
        "x = tf.Variable([1.0, 2.0])\nwith tf.GradientTape() as tape:\n    y = x * x\n"
        "g = tape.gradient(tf.reduce_sum(y, axis=0), x)\n",
        "x = tf.Variable([1.0, 2.0])\nwith tf.GradientTape() as tape:\n    y = x * x\n"
        "    target = tf.reduce_sum(y, axis=0)\ng = tape.gradient(target, x)\n",
        id="TF117-sum-with-an-axis",
    ),
    pytest.param(
        "TF117",
        "x = tf.Variable([1.0, 2.0])\nwith tf.GradientTape() as tape:\n    y = x * x\ny = y * 2.0\n"
        "g = tape.gradient(tf.reduce_sum(y), x)\n",
        None,
        id="TF117-reassigned-after-the-block",
    ),
    pytest.param(
        "TF117",
        "x = tf.Variable([1.0, 2.0])\nwith tf.GradientTape() as tape:\n    y = x * x\ng = tape.gradient(y * 2.0, x)\n",
        "x = tf.Variable([1.0, 2.0])\nwith tf.GradientTape() as tape:\n    y = x * x\n    target = y * 2.0\n"
        "g = tape.gradient(target, x)\n",
        id="TF117-arithmetic-after-the-block",
    ),
]

LEFT_ALONE = [
    pytest.param(
        "TF110",
        "x = tf.constant(1.0)\nwith tf.GradientTape() as tape:\n    y = 2.0\ng = tape.gradient(y, x)\n",
        id="TF110-source-not-used-in-the-block",
    ),
    pytest.param(
        "TF110",
        "x = tf.constant(1.0)\nx = tf.Variable(x)\nwith tf.GradientTape() as tape:\n    y = x * 2.0\n"
        "g = tape.gradient(y, x)\n",
        id="TF110-rebound-to-a-variable",
    ),
    pytest.param(
        "TF110",
        "x = tf.constant(1.0)\nz = tf.constant(2.0)\ninputs = [x, z]\nwith tf.GradientTape() as tape:\n"
        "    tape.watch(inputs)\n    y = x * z\ng = tape.gradient(y, x)\n",
        id="TF110-watched-through-a-list",
    ),
    pytest.param(
        "TF112",
        "x = tf.Variable(1.0)\nwith tf.GradientTape() as tape:\n    y = x * x\nif x > 0:\n    g = tape.gradient(y, x)\n"
        "elif x < 0:\n    g = tape.gradient(-y, x)\nelse:\n    g = tape.jacobian(y, x)\n",
        id="TF112-elif-chain",
    ),
    pytest.param(
        "TF112",
        "def f(xs, w):\n    with tf.GradientTape() as tape:\n        y = w * w\n    for x in xs:\n"
        "        if x:\n            return tape.gradient(y, w)\n",
        id="TF112-return-ends-the-loop",
    ),
    pytest.param(
        "TF112",
        "x = tf.Variable(1.0)\nwith tf.GradientTape() as a, tf.GradientTape() as b:\n    y = x * x\n"
        "ga = a.gradient(y, x)\ngb = b.gradient(y, x)\n",
        id="TF112-two-tapes",
    ),
    pytest.param(
        "TF113",
        "x = tf.Variable([0.0])\nwith tf.GradientTape() as tape:\n    a = tf.norm(x, ord=1)\n"
        "    b = tf.where(x > 0, x, 0.0)\n    c = x ** 2.5\n    d = tf.sqrt(tf.nn.softplus(x))\n",
        id="TF113-nothing-singular",
    ),
    pytest.param(
        "TF113",
        "x = tf.Variable([0.0])\nmask = tf.constant([True])\nwith tf.GradientTape() as tape:\n"
        "    y = tf.where(mask, tf.math.log(tf.constant([2.0])), x)\n",
        id="TF113-trap-on-a-constant",
    ),
    pytest.param(
        "TF114",
        "x = tf.Variable([1.7, 2.2])\nwith tf.GradientTape() as tape:\n"
        "    q = tf.cast(tf.cast(x, tf.int32), tf.float32)\n"
        "    loss = tf.reduce_sum(q * x)\ng = tape.gradient(loss, x)\n",
        id="TF114-a-differentiable-path-remains",
    ),
    pytest.param(
        "TF117",
        "x = tf.Variable([1.0, 2.0])\nfor step in range(2):\n    with tf.GradientTape() as tape:\n        y = x * x\n"
        "        loss = tf.reduce_sum(y)\n    g = tape.gradient(loss, x)\n    loss = 0.0\n",
        id="TF117-target-reassigned-after-use",
    ),
    pytest.param(
        "TF117",
        "x = tf.Variable(1.0)\nloss = 0.0\nwith tf.GradientTape() as tape:\n    loss = x * x\n"
        "g = tape.gradient(loss, x)\n\ndef f(y, x):\n    with tf.GradientTape() as tape:\n        z = x * 2.0\n"
        "    return tape.gradient(y, x)\n",
        id="TF117-initialised-before-and-computed-in-the-block-or-a-parameter",
    ),
]


@pytest.mark.parametrize("code, source, expected", FLAGGED)
def test_flagged(code, source, expected):
    config = Config(select=(code,), unsafe_fixes=True)
    findings = check_source(HEADER + source, config)
    assert findings and {f.code for f in findings} == {code}
    fixed = fix_source(HEADER + source, config).fixed_source
    if expected is None:
        assert all(f.fix is None for f in findings) and fixed == HEADER + source
    else:
        assert fixed == HEADER + expected


@pytest.mark.parametrize("code, source", LEFT_ALONE)
def test_left_alone(code, source):
    assert check_source(HEADER + source, Config(select=(code,))) == []


def test_suppression_on_the_gradient_line():
    source = HEADER + "x = tf.constant(1.0)\nwith tf.GradientTape() as tape:\n    y = x * 2.0\n"
    assert check_source(source + "g = tape.gradient(y, x)\n", Config(select=("TF110",)))
    assert check_source(source + "g = tape.gradient(y, x)  # tapefix: ignore[TF110]\n", Config(select=("TF110",))) == []


def test_watch_fix_keeps_crlf_line_endings():
    source = (
        HEADER + "x = tf.constant(1.0)\nwith tf.GradientTape() as tape:\n    y = x\ng = tape.gradient(y, x)\n"
    ).replace("\n", "\r\n")
    fixed = fix_source(source, Config(select=("TF110",))).fixed_source
    assert "    tape.watch(x)\r\n    y = x\r\n" in fixed
    assert "\n" not in fixed.replace("\r\n", "")


_EVERY_METHOD = [
    # a parameter (a variable) marked a source by the gradient call alone, cut by NumPy rounding
    "import numpy as np\n\ndef step(w):\n    with tf.GradientTape() as tape:\n"
    "        y = np.floor(w * 2.0)\n    return tape.{method}(y, w)\n",
    # a constant the tape never watches
    "x = tf.constant([[1.0, 2.0]])\nwith tf.GradientTape() as tape:\n    y = x * x\nj = tape.{method}(y, x)\n",
    # a second call on a non-persistent tape
    "x = tf.Variable([[1.0, 2.0]])\nwith tf.GradientTape() as tape:\n    y = x * x\n"
    "a = tape.{method}(y, x)\nb = tape.{method}(y, x)\n",
]


@pytest.mark.parametrize("module", _EVERY_METHOD)
def test_a_jacobian_or_batch_jacobian_is_a_gradient_call_like_any_other(module: str) -> None:
    found = {
        m: [f.code for f in check_source(HEADER + module.format(method=m))]
        for m in ("gradient", "jacobian", "batch_jacobian")
    }
    assert found["gradient"], module
    assert found["jacobian"] == found["gradient"] == found["batch_jacobian"]


def test_a_module_level_alias_of_a_module_resolves_like_an_import() -> None:
    module = (
        "keras = tf.keras\nM = tf.math\n\nnet = keras.Sequential([keras.layers.Dense(1)])\n"
        "x = tf.Variable([[1.5]])\nwith tf.GradientTape() as tape:\n    y = M.floor(net(x))\n"
        "    z = net.predict(x)\n    loss = tf.reduce_sum(y) + tf.reduce_sum(z)\n"
        "g = tape.gradient(loss, net.trainable_variables)\n"
    )
    assert sorted(f.code for f in check_source(HEADER + module)) == ["TF101", "TF109"]
    # A name bound to something else is not an alias.
    assert [f.code for f in check_source(HEADER + module.replace("M = tf.math", "M = object()"))] == ["TF109"]
