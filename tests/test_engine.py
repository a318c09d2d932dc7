"""The engine's fix loop: passes, overlap, rejection by the verifier."""

from __future__ import annotations

from unittest import mock

import pytest

from tapefix import Config, Status, Verdict, check_source, fix_source
from tapefix.engine import BROKEN_FIX
from tapefix.rule import RuleContext
from tapefix.types import Edit

SOURCE = """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.7, 0.0])
with tf.GradientTape() as tape:
    y = np.floor(x)
    z = 1 / x
"""


def test_a_rejected_fix_is_verified_once_and_reported_once():
    calls = []

    def verifier(source, findings):
        calls.extend(f.code for f in findings)
        return [Verdict("verified" if f.code == "TF101" else "failed", "by design") for f in findings]

    result = fix_source(SOURCE, Config(unsafe_fixes=True), verifier)
    assert calls.count("TF103") == 1
    statuses = [(o.finding.code, o.status) for o in result.outcomes]
    assert statuses == [("TF101", Status.FIXED), ("TF103", Status.REJECTED)]
    assert "tf.stop_gradient(tf.floor(x))" in result.fixed_source
    assert "z = 1 / x" in result.fixed_source


def test_without_a_verifier_every_applicable_fix_lands_and_the_result_is_a_fixed_point():
    result = fix_source(SOURCE, Config(unsafe_fixes=True))
    assert [o.status for o in result.outcomes] == [Status.FIXED, Status.FIXED]
    assert fix_source(result.fixed_source, Config(unsafe_fixes=True)).fixed_source == result.fixed_source


def test_tf_compat_v2_is_tf_however_it_is_spelled():
    import libcst as cst

    from tapefix.analysis.names import ImportMap

    imports = ImportMap()
    imports.add("tf", "tensorflow", True)
    assert imports.qualify(cst.parse_expression("tf.compat.v2.summary.scalar")) == "tensorflow.summary.scalar"
    assert imports.qualify(cst.parse_expression("tf.compat.v1.floor")) == "tensorflow.compat.v1.floor"


BODY = """
def train(w):
    with GradientTape() as tape:
        y = np.floor(w)
    return tape.gradient(y, w)
"""


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        pytest.param(
            "import numpy as np\nfrom tensorflow import GradientTape\n",
            "import numpy as np\nfrom tensorflow import GradientTape\nimport tensorflow as tf\n",
            id="after-the-leading-imports",
        ),
        pytest.param(
            '"""Doc."""\nfrom __future__ import annotations\n# note\n\n\ndef first():\n    pass\n\n\n'
            "import numpy as np\nfrom tensorflow import GradientTape\n",
            '"""Doc."""\nfrom __future__ import annotations\n# note\n\n\nimport tensorflow as tf\ndef first():\n',
            id="after-docstring-and-future-import",
        ),
        pytest.param(
            "# helpers\n@staticmethod\ndef first(v):\n    return v\n\n\n"
            "import numpy as np\nfrom tensorflow import GradientTape\n",
            "# helpers\nimport tensorflow as tf\n@staticmethod\ndef first(v):\n",
            id="above-the-decorators-of-the-first-statement",
        ),
    ],
)
def test_the_import_a_fix_needs_goes_where_it_keeps_the_module_valid(head, expected):
    source = head + BODY
    result = fix_source(source, Config(unsafe_fixes=True))
    assert [o.status for o in result.outcomes] == [Status.FIXED]
    assert result.fixed_source.startswith(expected)
    compile(result.fixed_source, "<fixed>", "exec")


def test_a_fix_that_would_not_parse_is_reported_without_it_and_the_others_still_land():
    head = "import numpy as np\nfrom tensorflow import GradientTape, keras\n\nmodel = keras.Sequential([])\n"
    source = head + BODY.replace("y = np.floor(w)", "y = np.floor(w) + model.predict(w)")
    # Every import a fix adds comes out as code that does not parse.
    with mock.patch.object(RuleContext, "tf", lambda self: ("tf", (Edit(0, 0, "def (\n"),))):
        result = fix_source(source, Config(unsafe_fixes=True))
    outcomes = {o.finding.code: o for o in result.outcomes}
    assert outcomes["TF109"].status is Status.FIXED and "model(w, training=False)" in result.fixed_source
    assert outcomes["TF101"].status is Status.MANUAL and outcomes["TF101"].finding.fix is None
    assert outcomes["TF101"].finding.no_fix_reason == BROKEN_FIX
    assert "np.floor(w)" in result.fixed_source
    compile(result.fixed_source, "<fixed>", "exec")


def test_a_parameter_watched_in_one_function_is_that_functions_own():
    # ``tape.watch(x)`` of a parameter marks that parameter, not every ``x`` of the module.
    step = """\
import numpy as np
import tensorflow as tf


class Scaled:
    def step(self, x):
        with tf.GradientTape() as tape:
            y = np.floor(self.scale * x)
        return tape.gradient(y, self.scale)


def probe(x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = np.floor(x)
    return tape.gradient(y, x)
"""
    findings = check_source(step, Config(unsafe_fixes=True))
    assert [(f.code, f.start.line) for f in findings] == [("TF101", 15)]


def test_every_call_of_a_function_is_one_call_site_wherever_it_sits():
    import libcst as cst

    from tapefix.analysis.expressions import call_sites
    from tapefix.analysis.scope import ModuleAnalysis

    source = (
        "import tensorflow as tf\n\n"
        "def scale(v, k):\n    return v * k\n\n"
        "def step(x):\n    with tf.GradientTape() as tape:\n        y = scale(x, 2.0)\n"
        "    if x is not None:\n        z = scale(y, 3.0)\n    return scale(z, 4.0)\n\n"
        "def passed_around(f):\n    return f\n\n"
        "passed_around(scale)\n"
    )
    analysis = ModuleAnalysis(cst.parse_module(source))
    (scale,) = analysis.by_name["scale"]
    # Used as a value too: its callers are out of sight, so no site list at all.
    assert call_sites(analysis, scale) is None
    analysis = ModuleAnalysis(cst.parse_module(source.replace("passed_around(scale)\n", "")))
    (scale,) = analysis.by_name["scale"]
    sites = call_sites(analysis, scale)
    assert sites is not None
    # Inside a with block, an if and a return: each call once, with the function that makes it.
    assert [call.args[1].value.value for call, _, _ in sites] == ["2.0", "3.0", "4.0"]
    assert all(caller is not None and caller.node.name.value == "step" for _, caller, _ in sites)


PREDICT_THEN_NUMPY = """\
import numpy as np
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
features = tf.ones((4, 2))
with tf.GradientTape() as tape:
    pred = model.predict(features, verbose=0)
    loss = np.mean(pred * 2.0)
grads = tape.gradient(loss, model.trainable_variables)
with tf.GradientTape() as other:
    other_loss = np.floor(features[0, 0] * 3.0)
"""


def test_a_fix_whose_block_needs_the_next_pass_is_vouched_for_by_it():
    def verifier(source, findings):
        verdicts = []
        for finding in findings:
            if finding.code == "TF109":
                verdicts.append(
                    Verdict(
                        "verified",
                        "gradient raised AttributeError -> finite; the whole tape block's gradient is not back yet: x",
                        level="statement",
                    )
                )
            else:
                verdicts.append(Verdict("verified", "gradient was None -> finite", level="tape block"))
        return verdicts

    result = fix_source(PREDICT_THEN_NUMPY, Config(unsafe_fixes=True), verifier)
    by_code = {o.finding.code: o for o in result.outcomes}
    assert "model(features, training=False)" in result.fixed_source and "tf.reduce_mean" in result.fixed_source
    vouched = by_code["TF109"].verdict
    assert vouched is not None and vouched.level == "tape block", vouched
    assert "gradients back with the next pass's fixes (TF104 at line 8" in vouched.reason
    assert "not back yet" not in vouched.reason


def test_tape_blocks_are_numbered_in_order_and_the_innermost_holds_an_offset():
    from tapefix.analysis.syntax import tape_block_indices

    source = (
        "import tensorflow as tf\n"
        "s = 'é'; x = tf.Variable(1.0)\n"
        "with tf.GradientTape() as outer:\n"
        "    with tf.GradientTape() as inner:  # é\n"
        "        y = x * x\n"
        "    z = y * 2.0\n"
        "with open('f') as handle:\n"
        "    w = 1\n"
    )
    offsets = [source.index("y = x"), source.index("z = y"), source.index("w = 1"), source.index("s = ")]
    assert tape_block_indices(source, offsets) == [1, 0, None, None]
    assert tape_block_indices("with (", [0]) == [None]


def test_a_finding_an_earlier_fix_rewrote_and_fixed_again_is_one_fixed_finding():
    source = (
        "import numpy as np\nimport tensorflow as tf\n\n"
        "def stepped(v):\n    if v > 0:\n        return np.floor(v)\n    else:\n        return v\n\n"
        "w = tf.Variable([0.5, -1.5])\n"
        "with tf.GradientTape() as tape:\n    loss = tf.reduce_sum(stepped(w * 3.0))\n"
        "g = tape.gradient(loss, w)\n"
    )
    result = fix_source(source, Config(unsafe_fixes=True))
    assert "tf.where(v > 0, tf.stop_gradient(tf.floor(v))" in result.fixed_source
    # The rounding, first seen inside the if, is fixed inside the tf.where that replaced it: reported once.
    assert sorted((o.finding.code, o.status) for o in result.outcomes) == [
        ("TF101", Status.FIXED),
        ("TF102", Status.FIXED),
    ]


def test_a_helper_parameter_takes_the_shape_its_caller_passes_once_the_caller_is_known():
    import libcst as cst

    from tapefix.analysis.scope import ModuleAnalysis, Shape

    source = (
        "import tensorflow as tf\n\n"
        "def clipped(v):\n    w = v * 2.0\n    return w\n\n"
        "def my_loss(t, p):\n    return tf.reduce_mean(clipped(tf.abs(t - p)))\n\n"
        "def unused(u):\n    return u * 2.0\n\n"
        "model = tf.keras.Sequential([tf.keras.layers.Dense(1)])\n"
        "xs, ys = tf.ones((8, 3)), tf.zeros((8, 1))\n"
        "with tf.GradientTape() as tape:\n    pred = model(xs)\n    loss = my_loss(ys, pred)\n"
    )
    module = cst.parse_module(source)
    analysis = ModuleAnalysis(module)
    (clipped,) = analysis.by_name["clipped"]
    (unused,) = analysis.by_name["unused"]
    # my_loss's p is bound by the tape only after clipped's call was first read: v and what is computed
    # from it still end up with the batch's shape (a first guess made before p was known does not stick).
    returned = clipped.node.body.body[1].body[0].value
    assert analysis.value(returned, clipped).shape is Shape.NONSCALAR
    assert clipped.env["v"].shape is Shape.NONSCALAR and clipped.env["w"].shape is Shape.NONSCALAR
    # A parameter nothing in the module binds stays unknown to whoever asks.
    product = unused.node.body.body[0].body[0].value
    assert analysis.value(product, unused).shape is Shape.UNKNOWN


# ----------------------------------------------------------------- the ast-built tree decides first
CLEAN = """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
optimizer = tf.keras.optimizers.SGD()


def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x) - y))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss
"""

MATCHING = """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.7, 0.0])
match 1:
    case 1:
        pass
with tf.GradientTape() as tape:
    y = np.floor(x)
"""


def _no_libcst_parse(source):
    raise AssertionError("libcst parsed a module the ast-built tree had cleared")


def test_a_module_without_findings_is_never_parsed_by_libcst():
    with mock.patch("tapefix.engine.parse", _no_libcst_parse):
        assert check_source(CLEAN) == []
        result = fix_source(CLEAN, Config(unsafe_fixes=True))
    assert result.fixed_source == CLEAN and result.outcomes == ()


def test_a_module_with_a_finding_gets_the_findings_of_the_exact_tree():
    found = check_source(SOURCE)
    with mock.patch("tapefix.engine.light_module", side_effect=RuntimeError("no light tree")):
        exact = check_source(SOURCE)
    assert [(f.code, f.start, f.end, f.fix) for f in found] == [(f.code, f.start, f.end, f.fix) for f in exact]
    assert [f.code for f in found] == ["TF101", "TF103"]


def test_syntax_the_ast_tree_does_not_map_goes_to_libcst():
    # The converter leaves ``match`` to libcst; the finding after it is still made.
    assert [f.code for f in check_source(MATCHING)] == ["TF101"]


def test_a_rule_that_needs_the_exact_tree_sends_the_module_there():
    # Every question a rule asks of a position on the ast-built tree that it cannot answer exactly
    # falls back: here every range is missing, and the finding is still made on libcst's tree.
    with mock.patch(
        "tapefix.engine.light_module", side_effect=lambda text: (__import__("libcst").parse_module(text), {})
    ):
        assert [f.code for f in check_source(SOURCE)] == ["TF101", "TF103"]
