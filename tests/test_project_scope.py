"""Whole-project tape scope: idioms in functions of other modules that a tape runs, through the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest

from tapefix import api, project
from tapefix.cli import main

TRAIN_HEADER = """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
"""
LOSSES = """\
import numpy as np
import tensorflow as tf


def focal_loss(y_true, y_pred):
    rounded = np.floor(y_pred)
    return tf.reduce_mean(rounded - y_true)
"""


def write_tree(root: Path, files: Dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def check(root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> List[str]:
    """The TF101 finding lines of ``tapefix --check`` over the tree (other rules' lines left out)."""
    main(["--check", *extra, str(root)])
    out = capsys.readouterr().out
    return [line for line in out.splitlines() if " TF101 " in line]


def tape_calling(import_line: str, call: str) -> str:
    return (
        TRAIN_HEADER.replace("import tensorflow as tf\n", f"import tensorflow as tf\n{import_line}\n")
        + f"""

def train_step(x, y):
    with tf.GradientTape() as tape:
        pred = model(x)
        loss = {call}(y, pred)
    return tape.gradient(loss, model.trainable_variables)
"""
    )


@pytest.mark.parametrize(
    "import_line, call",
    [
        pytest.param("from .losses import focal_loss", "focal_loss", id="relative-from-import"),
        pytest.param("from pkg.losses import focal_loss", "focal_loss", id="absolute-from-import"),
        pytest.param("import pkg.losses as L", "L.focal_loss", id="import-as"),
        pytest.param("from pkg import losses", "losses.focal_loss", id="from-package-import-module"),
        pytest.param("from . import losses", "losses.focal_loss", id="relative-module-import"),
        pytest.param("import pkg.losses", "pkg.losses.focal_loss", id="dotted-import"),
        pytest.param("import os, pkg.losses as L", "L.focal_loss", id="second-name-of-an-import"),
        pytest.param("from \\\n    pkg.losses import focal_loss", "focal_loss", id="backslash-continuation"),
        pytest.param("import os, \\\n    pkg.losses as L", "L.focal_loss", id="continued-import-list"),
        pytest.param("from pkg.losses import (\n    focal_loss,\n)", "focal_loss", id="parenthesised-names"),
        pytest.param(
            "try:\n    from pkg.losses import focal_loss\nexcept ImportError:\n    pass", "focal_loss", id="in-try"
        ),
    ],
)
def test_idiom_in_an_imported_loss_is_found_and_marked_through_call(tmp_path, capsys, import_line, call):
    root = write_tree(
        tmp_path,
        {"pkg/__init__.py": "", "pkg/losses.py": LOSSES, "pkg/train.py": tape_calling(import_line, call)},
    )
    lines = check(root, capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{root / 'pkg' / 'losses.py'}:6:15: TF101")
    assert "reached through a call" in lines[0]


def test_the_fix_in_an_imported_loss_is_unsafe_and_applied_only_with_the_flag(tmp_path, capsys):
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/losses.py": LOSSES,
            "pkg/train.py": tape_calling("from .losses import focal_loss", "focal_loss"),
        },
    )
    main([str(root)])
    capsys.readouterr()
    assert (root / "pkg" / "losses.py").read_text() == LOSSES
    main(["--unsafe-fixes", str(root)])
    capsys.readouterr()
    fixed = (root / "pkg" / "losses.py").read_text()
    assert "np.floor(y_pred)" not in fixed
    assert "tf.floor(y_pred)" in fixed


def test_a_loss_reexported_by_the_package_and_its_helper_module_are_followed(tmp_path, capsys):
    helpers = """\
import numpy as np


def snap(values):
    return np.round(values)
"""
    losses = """\
import tensorflow as tf
from .helpers import snap


def focal_loss(y_true, y_pred):
    return tf.reduce_mean(snap(y_pred) - y_true)
"""
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "from .losses import focal_loss\n",
            "pkg/losses.py": losses,
            "pkg/helpers.py": helpers,
            "scripts/train.py": tape_calling("from pkg import focal_loss", "focal_loss"),
        },
    )
    lines = check(root, capsys)
    assert [line.split(": TF101")[0] for line in lines] == [f"{root / 'pkg' / 'helpers.py'}:5:12"]


def test_a_loss_given_to_keras_compile_runs_under_the_train_step_tape(tmp_path, capsys):
    fit = """\
import tensorflow as tf
from losses import focal_loss, smooth_l1

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
model.compile(optimizer="adam", loss={"box": smooth_l1(delta=1.0), "cls": focal_loss})
"""
    losses = (
        LOSSES
        + """

def smooth_l1(delta):
    def loss(y_true, y_pred):
        return np.round(y_pred - y_true) * delta
    return loss
"""
    )
    root = write_tree(tmp_path, {"losses.py": losses, "fit.py": fit})
    lines = check(root, capsys)
    assert [line.split(": TF101")[0] for line in lines] == [
        f"{root / 'losses.py'}:6:15",
        f"{root / 'losses.py'}:12:16",
    ]
    assert all("reached through a call" in line for line in lines)


def test_the_call_of_a_keras_loss_class_given_to_compile_runs_under_the_tape(tmp_path, capsys):
    losses = """\
import numpy as np
import tensorflow as tf


class RoundedLoss(tf.keras.losses.Loss):
    def call(self, y_true, y_pred):
        return tf.reduce_mean(np.round(y_pred) - y_true)

    def describe(self, y_pred):
        return np.round(y_pred)
"""
    fit = """\
import tensorflow as tf
from pkg.losses import RoundedLoss

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
model.compile(optimizer="adam", loss=RoundedLoss())
"""
    root = write_tree(tmp_path, {"pkg/__init__.py": "", "pkg/losses.py": losses, "fit.py": fit})
    lines = check(root, capsys)
    assert [line.split(": TF101")[0] for line in lines] == [f"{root / 'pkg' / 'losses.py'}:7:31"]


def test_a_keras_compute_loss_override_runs_under_the_train_step_tape(tmp_path, capsys):
    model = """\
import numpy as np
import tensorflow as tf
from pkg.losses import focal_loss


class Detector(tf.keras.Model):
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        return focal_loss(y, y_pred) + tf.reduce_sum(np.round(y_pred))
"""
    root = write_tree(tmp_path, {"pkg/__init__.py": "", "pkg/losses.py": LOSSES, "pkg/model.py": model})
    lines = check(root, capsys)
    assert [line.split(": TF101")[0] for line in lines] == [
        f"{root / 'pkg' / 'losses.py'}:6:15",
        f"{root / 'pkg' / 'model.py'}:8:54",
    ]


def test_a_keras_train_step_override_calling_an_imported_loss_through_an_attribute(tmp_path, capsys):
    model = """\
import tensorflow as tf
from pkg.losses import focal_loss


class Detector(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = tf.keras.layers.Dense(1)
        self.loss_fn = focal_loss

    def call(self, x):
        return self.dense(x)

    @tf.function
    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            pred = self(x, training=True)
            loss = self.loss_fn(y, pred)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return {"loss": loss}
"""
    root = write_tree(tmp_path, {"pkg/__init__.py": "", "pkg/losses.py": LOSSES, "pkg/model.py": model})
    lines = check(root, capsys)
    assert [line.split(": TF101")[0] for line in lines] == [f"{root / 'pkg' / 'losses.py'}:6:15"]


def test_negatives_uncalled_function_unrelated_same_name_and_untaped_call(tmp_path, capsys):
    losses = (
        LOSSES
        + """

def unused_loss(y_true, y_pred):
    return np.floor(y_pred)


def metric(y_true, y_pred):
    return np.floor(y_pred)
"""
    )
    unrelated = """\
import numpy as np


def focal_loss(y_true, y_pred):
    return np.floor(y_pred)
"""
    evaluate = """\
import tensorflow as tf
from pkg.losses import metric


def evaluate(model, x, y):
    return metric(y, model(x))
"""
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/losses.py": losses,
            "pkg/train.py": tape_calling("from .losses import focal_loss", "focal_loss"),
            "pkg/evaluate.py": evaluate,
            "tools/losses.py": unrelated,
            "tools/__init__.py": "",
        },
    )
    lines = check(root, capsys)
    # Only focal_loss of pkg/losses.py runs under a tape: not unused_loss, not metric (called outside any
    # tape), not tools/losses.py's focal_loss (same name, never imported by the tape's module).
    assert [line.split(": TF101")[0] for line in lines] == [f"{root / 'pkg' / 'losses.py'}:6:15"]


def test_an_instance_of_an_imported_loss_class_called_in_the_tape_runs_its_call(tmp_path, capsys):
    losses = """\
import numpy as np
import tensorflow as tf


class RoundedLoss(tf.keras.losses.Loss):
    def call(self, y_true, y_pred):
        return tf.reduce_mean(np.round(y_pred) - y_true)
"""
    train = """\
import tensorflow as tf
from pkg.losses import RoundedLoss


def train_step(model, x, y):
    loss_object = RoundedLoss()
    with tf.GradientTape() as tape:
        loss = loss_object(y, model(x))
    return tape.gradient(loss, model.trainable_variables)
"""
    root = write_tree(tmp_path, {"pkg/__init__.py": "", "pkg/losses.py": losses, "pkg/train.py": train})
    lines = check(root, capsys)
    assert [line.split(": TF101")[0] for line in lines] == [f"{root / 'pkg' / 'losses.py'}:7:31"]


def test_a_parameter_that_shadows_an_imported_name_is_not_followed(tmp_path, capsys):
    train = """\
import tensorflow as tf
from .losses import focal_loss


def train_step(model, x, y, focal_loss=tf.keras.losses.mse):
    with tf.GradientTape() as tape:
        loss = focal_loss(y, model(x))
    return tape.gradient(loss, model.trainable_variables)
"""
    root = write_tree(tmp_path, {"pkg/__init__.py": "", "pkg/losses.py": LOSSES, "pkg/train.py": train})
    assert check(root, capsys) == []


def test_a_label_argument_is_not_on_the_gradient_path(tmp_path, capsys):
    losses = """\
import numpy as np
import tensorflow as tf


def weighted(y_true, y_pred):
    weights = np.floor(y_true)
    return tf.reduce_mean(weights * y_pred)
"""
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/losses.py": losses,
            "pkg/train.py": tape_calling("from .losses import weighted", "weighted"),
        },
    )
    assert check(root, capsys) == []


def test_a_single_file_is_analysed_alone(tmp_path, capsys):
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/losses.py": LOSSES,
            "pkg/train.py": tape_calling("from .losses import focal_loss", "focal_loss"),
        },
    )
    assert check(root / "pkg" / "losses.py", capsys) == []


def test_private_helper_only_called_from_a_tape_block_is_direct(tmp_path, capsys):
    source = """\
import numpy as np
import tensorflow as tf

x = tf.Variable(3.7)


def _snap(value):
    return np.floor(value)


def public_snap(value):
    return np.floor(value)


with tf.GradientTape() as tape:
    y = _snap(x) + public_snap(x)
"""
    root = write_tree(tmp_path, {"train.py": source})
    lines = check(root, capsys)
    assert len(lines) == 2, lines
    private, public = lines
    assert private.startswith(f"{root / 'train.py'}:8:") and "reached through a call" not in private
    assert public.startswith(f"{root / 'train.py'}:12:") and "reached through a call" in public


def test_private_helper_also_called_outside_a_tape_stays_through_call(tmp_path, capsys):
    source = """\
import numpy as np
import tensorflow as tf

x = tf.Variable(3.7)


def _snap(value):
    return np.floor(value)


with tf.GradientTape() as tape:
    y = _snap(x)
print(_snap(x))
"""
    root = write_tree(tmp_path, {"train.py": source})
    lines = check(root, capsys)
    assert len(lines) == 1 and "reached through a call" in lines[0]


def test_a_namespace_package_module_is_reached(tmp_path, capsys):
    root = write_tree(
        tmp_path, {"ns/losses.py": LOSSES, "ns/train.py": tape_calling("from ns import losses", "losses.focal_loss")}
    )
    lines = check(root, capsys)
    assert len(lines) == 1 and lines[0].startswith(f"{root / 'ns' / 'losses.py'}:6:15: TF101"), lines


@pytest.mark.parametrize(
    "source, expected",
    [
        pytest.param(
            "import numpy as np\nimport tensorflow as tf\nfrom __future__ import annotations\n", False, id="outside"
        ),
        pytest.param("import os\n# from pkg import losses is how it was\n", True, id="a-comment-may-say-yes"),
        pytest.param("from . import x\n", True, id="relative"),
        pytest.param("from ..pkg.losses import f\n", True, id="relative-up"),
        pytest.param("import tensorflow as pkg\n", False, id="alias-named-like-the-tree"),
        pytest.param("import tensorflow as tf, losses\n", True, id="module-named-like-a-file"),
        pytest.param("raise ValueError('bad') from error\n", False, id="raise-from"),
    ],
)
def test_the_text_test_for_imports_from_the_tree(tmp_path, source, expected):
    """Only a module whose imports may name a module of the tree is parsed to summarise it."""
    files = [str(tmp_path / "pkg" / "__init__.py"), str(tmp_path / "pkg" / "losses.py")]
    index = project.ProjectIndex(files, lambda path: None)
    assert index.may_import_from_tree(source) is expected


def test_entry_points_of_a_tree(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/losses.py": LOSSES,
            "pkg/train.py": tape_calling("import pkg.losses as L", "L.focal_loss"),
        },
    )
    files = [str(p) for p in sorted(root.rglob("*.py"))]
    entries = project.entry_points(files, api._read_text)
    assert list(entries) == [str(root / "pkg" / "losses.py")]
    (entry,) = entries[str(root / "pkg" / "losses.py")]
    assert (entry.function, entry.positional, entry.keywords, entry.result) == ("focal_loss", (False, True), (), False)


# Precision on real code: false positives found by scripts/measure_real_code.py, fixed in the shared
# analysis, kept here as negative cases (each once reported a finding).
REAL_CODE_NEGATIVES = [
    pytest.param(
        """\
import tensorflow as tf


def assign_targets(labels, output_size):
    height = tf.cast(output_size[0], tf.float32)
    return tf.math.floor(labels / height)


def build_losses(model, x, labels):
    with tf.GradientTape() as tape:
        outputs = model(x)
        output_size = outputs.get_shape().as_list()[1:3]
        targets = assign_targets(labels, output_size)
        loss = tf.reduce_sum(outputs - targets)
    return loss
""",
        id="static-shape-of-a-model-output-is-not-a-tensor",
    ),
    pytest.param(
        """\
import tensorflow as tf


def padded_loss(logits, labels):
    xentropy = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    weights = tf.cast(tf.not_equal(labels, 0), tf.float32)
    return xentropy * weights, weights


def step(model, x, labels):
    with tf.GradientTape() as tape:
        logits = model(x)
        xentropy, weights = padded_loss(logits, labels)
        loss = tf.math.floor(tf.reduce_sum(weights))
    return loss
""",
        id="each-name-unpacked-from-a-returned-tuple-takes-its-own-element",
    ),
    pytest.param(
        """\
import tensorflow as tf


def step(model, optimizer, x, y, variables):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x) - y)
    with tape:
        scaled_loss = optimizer.get_scaled_loss(loss)
    return tape.gradient(scaled_loss, variables)
""",
        id="with-tape-resumes-recording-on-a-tape-opened-before",
    ),
    pytest.param(
        """\
import tensorflow as tf


class Test:
    def _create_strategy_and_model(self):
        strategy = tf.distribute.get_strategy()
        return build(), strategy

    def test_step(self, features):
        model, strategy = self._create_strategy_and_model()
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(features))
            per_replica = loss / strategy.num_replicas_in_sync
        return tape.gradient(per_replica, model.trainable_variables)
""",
        id="a-def-named-like-a-model-returns-what-it-returns",
    ),
    pytest.param(
        """\
import tensorflow as tf


def ste_round(x):
    @tf.custom_gradient
    def _call(x):
        def grad(dy):
            return dy

        return tf.round(x), grad

    return _call(x)


@tf.custom_gradient
def ste_floor(x):
    return tf.floor(x), lambda dy: dy


w = tf.Variable([1.5, 2.5])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(ste_round(w) + ste_floor(w))
""",
        id="a-custom-gradient-function-gives-its-own-gradient",
    ),
    pytest.param(
        """\
import tensorflow as tf


class DiceLoss:
    def __call__(self, logits, labels):
        union = tf.reduce_sum(labels + logits, axis=0)
        normalizer = tf.reduce_sum(union)
        if normalizer == 0:
            return tf.convert_to_tensor(1.0)
        return 1 - tf.reduce_sum(labels * logits) / normalizer


def step(model, x, labels):
    loss_object = DiceLoss()
    with tf.GradientTape() as tape:
        loss = loss_object(model(x), labels)
    return tape.gradient(loss, model.trainable_variables)
""",
        id="a-denominator-tested-for-zero-with-an-early-return",
    ),
]


@pytest.mark.parametrize("source", REAL_CODE_NEGATIVES)
def test_real_code_that_is_right(source):
    from tapefix import check_source

    assert [f.code for f in check_source(source)] == []


def test_import_cycles_and_a_module_that_does_not_parse_leave_the_rest_analysed(tmp_path, capsys):
    helpers = """\
import numpy as np
from .losses import focal_loss


def snap(values):
    return np.round(values) + focal_loss(values, values)
"""
    losses = """\
import tensorflow as tf
from .helpers import snap


def focal_loss(y_true, y_pred):
    return tf.reduce_mean(snap(y_pred) - y_true)
"""
    root = write_tree(
        tmp_path,
        {
            "pkg/__init__.py": "from .losses import *\nfrom .broken import *\n",
            "pkg/losses.py": losses,
            "pkg/helpers.py": helpers,
            "pkg/broken.py": "import tensorflow as tf\nwith tf.GradientTape() as tape\n    pass\n",
            "pkg/train.py": tape_calling("from .losses import focal_loss", "focal_loss"),
        },
    )
    code = main(["--check", str(root)])
    captured = capsys.readouterr()
    assert code == 2  # the file that does not parse is an error; the others are still analysed
    assert f"{root / 'pkg' / 'broken.py'}:" in captured.err and "does not parse" in captured.err
    lines = [line for line in captured.out.splitlines() if " TF101 " in line]
    assert [line.split(": TF101")[0] for line in lines] == [f"{root / 'pkg' / 'helpers.py'}:6:12"]


def test_a_tape_imported_as_tensorflow_own_libraries_import_it_is_a_tape():
    from tapefix import check_source

    source = """\
import numpy as np
import tensorflow as tf
from tensorflow.python.eager.backprop import GradientTape

x = tf.Variable(3.7)
with GradientTape() as tape:
    y = np.floor(x)
"""
    assert [f.code for f in check_source(source) if f.code == "TF101"] == ["TF101"]


def test_an_instance_of_a_loss_class_of_the_same_module_called_in_the_tape_runs_its_call():
    from tapefix import check_source

    source = """\
import numpy as np
import tensorflow as tf


class RoundedLoss(tf.keras.losses.Loss):
    def call(self, y_true, y_pred):
        return tf.reduce_mean(np.round(y_pred) - np.round(y_true))


def step(model, x, y):
    loss_object = RoundedLoss()
    with tf.GradientTape() as tape:
        loss = loss_object(y, model(x))
    return tape.gradient(loss, model.trainable_variables)
"""
    findings = [f for f in check_source(source) if f.code == "TF101"]
    assert [(f.start.line, f.start.column, f.through_call) for f in findings] == [(7, 30, True)]
