"""The engine's fix loop: passes, overlap, rejection by the verifier."""

from __future__ import annotations

from tapefix import Config, Status, Verdict, fix_source

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
