"""The parse of only what the analysis needs (tapefix.analysis.slicing) changes no finding and no fix.

Each way one top-level definition can change what the analysis says of another (a call by name, a Keras
object known by its name, a private function's uses, a module-level list a tensor is appended to, an
alias of GradientTape, a compile(loss=...) call, an import) has a case here, and generated modules mix
them with colliding names: sliced or whole, every finding and every fixed source is the same.
"""

from __future__ import annotations

import ast
import contextlib
import re
import textwrap
from typing import Iterator, List
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tapefix import engine
from tapefix.analysis import slicing
from tapefix.types import Config

UNSAFE = Config(unsafe_fixes=True)
HEADER = "import numpy as np\nimport tensorflow as tf\nfrom tensorflow import keras\n\n"

UNRELATED = """
def prepare(rows, scale=2):
    out = []
    for row in rows:
        out.append(float(row) * scale)
    return sorted(out)


class Config:
    def __init__(self, path):
        self.path = path
"""


def whole(source: str) -> tuple:
    with mock.patch.object(engine, "needed_source", lambda text, entry_points=(): text):
        return _results(source)


@contextlib.contextmanager
def always_sliced() -> Iterator[None]:
    """Slicing for every module, however short and however little it may leave out."""
    with mock.patch.object(slicing, "MIN_LINES", 0), mock.patch.object(slicing, "MIN_SHARE", 0):
        yield


def sliced(source: str) -> tuple:
    with always_sliced():
        return _results(source)


def _results(source: str) -> tuple:
    return engine.check_source(source, UNSAFE), engine.fix_source(source, UNSAFE).fixed_source


def blanked_lines(source: str) -> List[int]:
    with always_sliced():
        needed = slicing.needed_source(source)
    return [i + 1 for i, (a, b) in enumerate(zip(source.splitlines(), needed.splitlines())) if a.strip() != b.strip()]


CASES = {
    "keras-object-built-elsewhere": """
        def build():
            model = keras.Sequential([keras.layers.Dense(1)])
            return model

        def train(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = model.predict(x)
            return tape.gradient(y, x)
        """,
    "private-helper-also-called-elsewhere": """
        def _scale(v):
            return np.floor(v)

        def report(v):
            return _scale(v)

        def train(w):
            with tf.GradientTape() as tape:
                y = _scale(w * 2.0)
            return tape.gradient(y, w)
        """,
    "module-list-appended-elsewhere": """
        history = []

        def remember(w):
            history.append(tf.Variable(w))

        def train(w, x):
            with tf.GradientTape() as tape:
                h = history[0] * x
                if h > 0:
                    h = h * 2.0
            return tape.gradient(h, w)
        """,
    "gradient-tape-alias": """
        from tensorflow import GradientTape as GT

        def train(w):
            with GT() as tape:
                y = np.floor(w)
            return tape.gradient(y, w)
        """,
    "compile-with-spaces": """
        def my_loss(y_true, y_pred):
            return tf.reduce_mean(np.floor(y_pred) - y_true)

        def fit(model):
            model . compile (loss=my_loss)

        def train(w):
            with tf.GradientTape() as tape:
                y = w * 2.0
            return tape.gradient(y, w)
        """,
    "import-inside-a-def": """
        def setup():
            import numpy as onp
            return onp

        def train(w):
            with tf.GradientTape() as tape:
                y = onp.floor(w)
            return tape.gradient(y, w)
        """,
    "layer-attribute-named-like-the-trainers": """
        class Block(keras.layers.Layer):
            def __init__(self):
                super().__init__()
                self.encoder = keras.layers.Dense(2)

        class Trainer:
            def step(self, x):
                with tf.GradientTape() as tape:
                    y = self.encoder.predict(x)
                return tape.gradient(y, x)
        """,
    "instance-called-in-the-tape-runs-its-call": """
        class Block(keras.layers.Layer):
            def __init__(self):
                super().__init__()
                self.dense = keras.layers.Dense(2)

            def call(self, x):
                return self.dense(x) / x

        def fit(x):
            layer = Block()
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
            return tape.gradient(y, x)
        """,
    "attribute-assigned-by-another-method": """
        class Scaled:
            def build(self, shape):
                self.w = tf.Variable(tf.ones(shape))

            def step(self, x):
                with tf.GradientTape() as tape:
                    y = np.floor(self.w * x)
                return tape.gradient(y, self.w)
        """,
    "method-called-through-self": """
        class Trainer:
            def _loss(self, y):
                return 1 / y

            def step(self, x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    z = self._loss(x * 2.0)
                return tape.gradient(z, x)
        """,
    "method-whose-parameter-another-method-binds": """
        class Trainer:
            def scaled_loss(self, y):
                return 1 / y

            def warm_up(self, w):
                return self.scaled_loss(tf.Variable(w))

            def step(self, x):
                with tf.GradientTape() as tape:
                    z = self.scaled_loss(x)
                return tape.gradient(z, x)
        """,
    # The analysis keeps what a class body assigns with the module's values.
    "class-level-assignment-read-as-a-module-name": """
        class Settings:
            scale = tf.Variable(2.0)

        def train(w):
            with tf.GradientTape() as tape:
                y = np.floor(scale) * w
            return tape.gradient(y, w)
        """,
    # The analysis counts every use of a private function's name to decide whether it runs only under
    # the tape (its fixes then as safe as the tape's): an attribute of the same name counts too.
    "private-function-named-as-an-attribute": """
        def _scale(v):
            return 1 / v

        def train(w):
            with tf.GradientTape() as tape:
                y = _scale(w)
            return tape.gradient(y, w)

        def configure(obj):
            obj._scale = 3
        """,
    "gradient-of-a-module-level-name-elsewhere": """
        def grads(tape, y):
            return tape.gradient(y, w)

        def train(x):
            with tf.GradientTape() as tape:
                y = np.floor(w * x)
            return tape, y
        """,
}


@pytest.mark.parametrize("body", [pytest.param(textwrap.dedent(b), id=k) for k, b in CASES.items()])
def test_every_connection_keeps_what_it_connects(body: str) -> None:
    source = HEADER + UNRELATED + body
    assert sliced(source) == whole(source)
    # The unrelated definitions are left out; everything of the case is kept.
    unrelated = range(HEADER.count("\n") + 2, HEADER.count("\n") + UNRELATED.count("\n") + 1)
    assert set(blanked_lines(source)) == {n for n in unrelated if source.splitlines()[n - 1].strip()}


def test_a_definition_is_left_out_only_when_nothing_connects_it() -> None:
    source = HEADER + UNRELATED + "\ndef train(w):\n    with tf.GradientTape() as tape:\n        y = prepare(w)\n"
    first = source.splitlines().index("class Config:") + 1
    assert blanked_lines(source) == [first, first + 1, first + 2]  # prepare is called from the tape: kept


def test_lines_columns_and_line_breaks_are_kept() -> None:
    odd = "def odd():\r\n    return 'form\x0cfeed \u2028 separator'\r\n\r\n"
    source = HEADER + odd + UNRELATED + "def train(w):\n    with tf.GradientTape() as tape:\n        y = np.floor(w)\n"
    with always_sliced():
        needed = slicing.needed_source(source)
    breaks = re.compile(r"\r\n|\r|\n")
    assert breaks.findall(needed) == breaks.findall(source)
    for kept, original in zip(breaks.split(needed), breaks.split(source)):
        assert kept in ("", 'pass;"""', '"""', "pass", original)
    assert "odd" not in needed and "prepare" not in needed and "np.floor(w)" in needed
    assert sliced(source) == whole(source)


def test_a_short_module_is_parsed_whole() -> None:
    source = HEADER + UNRELATED
    assert slicing.needed_source(source) is source


def test_a_module_mostly_in_definitions_that_name_the_tape_is_parsed_whole() -> None:
    # One class holds the tape and most of the module, as in real packages: little could be left out.
    method = "    def helper_{n}(self, x):\n" + "        x = x + {n}\n" * 8 + "        return x\n\n"
    trainer = "class Trainer:\n" + "".join(method.format(n=n) for n in range(25))
    trainer += "    def step(self, x):\n        with tf.GradientTape() as tape:\n            y = np.floor(x)\n"
    source = HEADER + UNRELATED + "\n\n" + trainer
    assert source.count("\n") > slicing.MIN_LINES
    assert slicing._room(source, ("GradientTape",)) < slicing.MIN_SHARE
    assert slicing.needed_source(source) is source
    # The same module with the helpers outside the class: most of it may go, and does.
    helpers = "".join(method.format(n=n).replace("    ", "", 1).replace("self, ", "") for n in range(25))
    spread = HEADER + UNRELATED + helpers
    spread += "\n\ndef step(x):\n    with tf.GradientTape() as tape:\n        y = np.floor(x)\n"
    assert slicing._room(spread, ("GradientTape",)) > slicing.MIN_SHARE
    assert "def helper_3" not in slicing.needed_source(spread)


# ----------------------------------------------------------------------------- generated modules
CALLEES = ["helper", "_helper", "scale"]
OBJECTS = ["model", "net"]
LISTS = ["history", "log"]
ATTRIBUTES = ["dense", "loss_fn"]
CLASSES = ["Block", "Head"]

TEMPLATES = [
    """
def train_{n}(x, w):
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = {callee}(x * w)
        y = np.floor(h)
        if h > 0:
            y = y * 2.0
        r = 1 / y
        p = {obj}.predict(x)
        {lst}.append(r)
    return tape.gradient(r, [w])
""",
    """
def {callee}(v):
    return tf.math.sqrt(v) / v
""",
    """
def build_{n}():
    {obj} = keras.Sequential([keras.layers.Dense(1)])
    return {obj}
""",
    """
def remember_{n}(t):
    {lst}.append(tf.Variable(t))
    return {callee}(t)
""",
    """
class {cls}(keras.layers.Layer):
    def __init__(self):
        super().__init__()
        self.{attr} = keras.layers.Dense(2)

    def call(self, x):
        return self.{attr}(x) / x
""",
    """
class Trainer{n}:
    def __init__(self):
        self.{attr} = {callee}

    def step(self, x):
        with tf.GradientTape() as tape:
            y = self.{attr}(x)
            z = np.round(y)
        return tape.gradient(z, x)
""",
    """
{lst} = []
""",
    """
{obj} = build_{n}()
""",
    """
class Runner{n}:
    def __init__(self):
        self.{attr} = {callee}
        self.count = 0

    def describe(self):
        return "runner " + str(self.count)

    def _loss(self, y):
        return np.floor(y) / y

    def step(self, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = self.{attr}(x)
            z = self._loss(y)
        return tape.gradient(z, x)

    def reset(self, v):
        self.count = v
        return {callee}(v)
""",
    """
class Net{n}(keras.Model):
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        return tf.reduce_mean(self.rounded(y_pred) - y)

    def rounded(self, v):
        return np.round(v) / v

    def get_config(self):
        return {{"n": {n}}}
""",
    """
class Scaled{n}:
    def build(self, shape):
        self.{attr} = tf.Variable(tf.ones(shape))

    def step(self, x):
        with tf.GradientTape() as tape:
            y = np.floor(self.{attr} * x)
        return tape.gradient(y, self.{attr})
""",
    """
def fit_{n}(x):
    layer = {cls}()
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    return tape.gradient(y, x)
""",
    """
def unrelated_{n}(obj):
    obj.{callee} = 3
    return obj
""",
]
#: the templates that are definitions (the others are module-level code)
DEFINITIONS = [t for t in TEMPLATES if t.lstrip().startswith(("def ", "class "))]


@st.composite
def modules(draw) -> str:
    parts = [HEADER]
    for _ in range(draw(st.integers(2, 7))):
        template = draw(st.sampled_from(TEMPLATES))
        parts.append(
            template.format(
                n=draw(st.integers(0, 2)),
                callee=draw(st.sampled_from(CALLEES)),
                obj=draw(st.sampled_from(OBJECTS)),
                lst=draw(st.sampled_from(LISTS)),
                attr=draw(st.sampled_from(ATTRIBUTES)),
                cls=draw(st.sampled_from(CLASSES)),
            )
        )
    return "".join(parts)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modules())
def test_generated_modules_give_the_same_findings_and_fixes_sliced_or_whole(source: str) -> None:
    assert sliced(source) == whole(source)


# ----------------------------------------------------------------------------- edits, as an editor makes them
EDITS = [
    "change-a-number",
    "delete-a-definition",
    "insert-a-definition",
    "delete-a-method",
    "change-module-code",
    "suppress-a-line",
]


@st.composite
def edited_modules(draw) -> tuple:
    old = draw(modules())
    lines = old.splitlines(keepends=True)
    kind = draw(st.sampled_from(EDITS))
    starts = [i for i, line in enumerate(lines) if line.startswith(("def ", "class "))]
    if kind == "change-a-number":
        numbered = [i for i, line in enumerate(lines) if re.search(r"\d", line)]
        if numbered:
            i = draw(st.sampled_from(numbered))
            lines[i] = re.sub(r"\d", "7", lines[i], count=1)
    elif kind == "delete-a-definition" and starts:
        i = draw(st.sampled_from(starts))
        end = next((j for j in range(i + 1, len(lines)) if lines[j][:1] not in ("", " ", "\n")), len(lines))
        del lines[i:end]
    elif kind == "delete-a-method":
        methods = [i for i, line in enumerate(lines) if line.startswith("    def ")]
        if methods:
            i = draw(st.sampled_from(methods))
            outdented = (j for j in range(i + 1, len(lines)) if lines[j].strip() and not lines[j].startswith(" " * 5))
            end = next(outdented, len(lines))
            del lines[i:end]
    elif kind == "insert-a-definition":
        at = draw(st.sampled_from([*starts, len(lines)]))
        template = draw(st.sampled_from(DEFINITIONS))
        text = template.format(n=9, callee="helper", obj="model", lst="history", attr="dense", cls="Block")
        lines.insert(at, text.lstrip("\n") + "\n")
    elif kind == "change-module-code":
        lines.append("history = []\n")
    else:
        tape = [i for i, line in enumerate(lines) if "np.floor" in line or "np.round" in line]
        if tape:
            i = draw(st.sampled_from(tape))
            lines[i] = lines[i].rstrip("\n") + "  # tapefix: ignore\n"
    return old, "".join(lines)


def _module(*parts: tuple) -> str:
    """A module of templates, each given as (index, n, callee, obj, lst, attr, cls)."""
    keys = ("n", "callee", "obj", "lst", "attr", "cls")
    return HEADER + "".join(TEMPLATES[i].format(**dict(zip(keys, rest))) for i, *rest in parts)


#: the only caller of a Keras layer deleted: the finding in its ``call`` (reached through that call) goes
_LAYER = (4, 0, "helper", "model", "history", "dense", "Block")
_FIT = (11, 0, "helper", "model", "history", "dense", "Block")
_TRAIN = (0, 0, "helper", "model", "history", "dense", "Block")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_modules())
@example((_module(_LAYER, _FIT, _TRAIN, _TRAIN, _TRAIN, _TRAIN), _module(_LAYER, _TRAIN, _TRAIN, _TRAIN, _TRAIN)))
@example((_module(_LAYER, _TRAIN), _module(_LAYER, _FIT, _TRAIN)))
def test_after_an_edit_the_editor_check_equals_a_whole_check(case: tuple) -> None:
    old, new = case
    previous = engine.check_source(old, UNSAFE)
    assert engine.check_edited_source(new, UNSAFE, old, previous) == engine.check_source(new, UNSAFE)


def test_an_edit_inside_one_training_step_re_analyses_only_that_step() -> None:
    steps = "".join(TEMPLATES[0].format(n=n, callee="tf.abs", obj=f"model_{n}", lst=f"history_{n}") for n in range(5))
    old = HEADER + steps.replace("def train_", "def step_")
    new = old.replace("y = y * 2.0", "y = y * 3.0", 1)
    plan = slicing.plan_edit(old, new)
    assert plan is not None
    assert [new[start:end].split("(")[0].strip() for start, end in plan.fresh] == ["def step_0"]
    assert "def step_1" not in plan.needed and "def step_0" in plan.needed
    previous = engine.check_source(old, UNSAFE)
    assert previous and engine.check_edited_source(new, UNSAFE, old, previous) == engine.check_source(new, UNSAFE)
    # A module-level list every step appends to connects them all, and module-level code: all is fresh.
    steps = "".join(TEMPLATES[0].format(n=n, callee="tf.abs", obj="model", lst="history") for n in range(5))
    shared = HEADER + "history = []\n" + steps
    plan = slicing.plan_edit(shared, shared.replace("y = y * 2.0", "y = y * 3.0", 1))
    assert plan is not None and len(plan.fresh) == 5 + 4  # five steps, three imports and the list
    # Module-level code edited: the whole module.
    assert slicing.plan_edit(shared, shared.replace("history = []", "history = [0]")) is None


# ----------------------------------------------------------------------------- reading an edit's lines only
def described(module: slicing._Module) -> tuple:
    """All a read module tells, comparable."""

    def unit(s: slicing._Statement) -> tuple:
        common = (type(s).__name__, s.first, s.last, sorted(s.mentions), s.imports, sorted(s.private))
        if not isinstance(s, slicing._Definition):
            return common + (sorted(s.binds),)  # type: ignore[attr-defined]
        facts = (s.text, sorted(s.links), s.needed, s.name, sorted(s.stores), sorted(s.loads))
        constructed = [(n, ast.dump(c)) for n, c in s.constructed]
        parts = (unit(s.rest) if s.rest is not None else None, [unit(m) for m in s.members])
        return common + facts + (constructed, parts)

    statements = [unit(s) for s in module.statements]
    return module.lines, module.starts, statements, module.imports, module.code_lines, module.tape_aliases


def read_after_edit(old: str, new: str) -> slicing._Module | None:
    """What plan_edit reads of ``new`` after ``old``: the edited lines only."""
    old_module = slicing._read(old)
    assert old_module is not None
    start = slicing._common_length(old, new, 0, min(len(old), len(new)))
    suffix = slicing._common_length(old, new, -1, min(len(old), len(new)) - start)
    start = old.rfind("\n", 0, start) + 1
    tail = old.find("\n", len(old) - suffix)
    old_end = len(old) if tail < 0 else tail + 1
    return slicing._read_edited(old_module, new, start, old_end, old_end + len(new) - len(old))


@settings(max_examples=150, deadline=None)
@given(edited_modules())
def test_reading_only_the_edited_lines_reads_what_a_whole_read_does(case: tuple) -> None:
    old, new = case
    edited, whole_read = read_after_edit(old, new), slicing._read(new)
    assert edited is not None and whole_read is not None
    assert described(edited) == described(whole_read)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(("    return v\n", "    return (v\n"), id="opens-a-bracket"),
        pytest.param(("    return v\n", '    return """v\n'), id="opens-a-string"),
        pytest.param(("\n\ndef b", "\n    w = 1\n\ndef b"), id="indented-line-joins-the-block-above"),
        pytest.param(("def b(", "@decorate\ndef b("), id="adds-a-decorator"),
        pytest.param(("def b(v):\n", "if v:\n  def b(v):\n"), id="nests-a-definition"),
        pytest.param(("    return v\n", "    return v \\\n"), id="continues-a-line"),
    ],
)
def test_an_edit_that_joins_its_lines_to_others_is_read_as_the_module_is(edit: tuple) -> None:
    old = "def a(v):\n    return v\n\n\ndef b(v):\n    return v\n\n\nx = 1\r\ny = 2\n"
    new = old.replace(*edit, 1)
    edited, whole_read = read_after_edit(old, new), slicing._read(new)
    assert (edited is None) == (whole_read is None)
    if edited is not None and whole_read is not None:
        assert described(edited) == described(whole_read)


def test_common_length_from_either_end() -> None:
    assert slicing._common_length("abcdef", "abcxef", 0, 6) == 3
    assert slicing._common_length("abcdef", "abcxef", -1, 6) == 2
    assert slicing._common_length("abc", "abc", 0, 3) == 3
    assert slicing._common_length("abc", "abcd", -1, 3) == 0
    assert slicing._common_length("", "a", 0, 0) == 0


def test_methods_of_a_kept_class_that_nothing_kept_connects_to_are_left_out() -> None:
    runner = TEMPLATES[8].format(n=1, attr="dense", callee="helper")
    net = TEMPLATES[9].format(n=1)
    source = HEADER + runner + net + TEMPLATES[1].format(callee="helper")
    with always_sliced():
        needed = slicing.needed_source(source)
    # describe() only reads what others assign; get_config() is Keras's, not the tape's.
    assert "def describe" not in needed and "def get_config" not in needed
    # __init__ assigns self.dense, which step() calls; step() calls self._loss; compute_loss calls
    # self.rounded; reset() assigns self.count, which __init__ mentions.
    for kept in ("def __init__", "def _loss", "def step", "def reset", "def compute_loss", "def rounded"):
        assert kept in needed
    assert sliced(source) == whole(source)


@pytest.mark.parametrize(
    "module",
    [
        # ``t = tf.GradientTape()`` in one function makes ``with t:`` a tape block anywhere.
        "def make():\n    t = tf.GradientTape()\n    return t\n\n\n"
        "def train(w):\n    with t:\n        y = np.floor(w)\n    return t.gradient(y, w)\n",
        # A tape's gradient of a name no function binds marks it for the whole module.
        "def grads(tape, y):\n    return tape.gradient(y, w)\n\n\ndef train(x):\n    with tf.GradientTape() as tape:\n"
        "        y = np.floor(w * x)\n    return y\n",
    ],
    ids=["tape-opened-elsewhere", "module-wide-mark"],
)
def test_an_edit_keeps_what_reaches_it_through_module_wide_names(module: str) -> None:
    old = HEADER + UNRELATED + module
    new = old.replace("np.floor(w", "np.floor(2.0 * w")
    previous = engine.check_source(old, UNSAFE)
    assert previous and engine.check_edited_source(new, UNSAFE, old, previous) == engine.check_source(new, UNSAFE)


def test_an_edit_inside_a_method_of_a_class_whose_own_statements_are_re_analysed() -> None:
    # step() names its class, so the class's rest, which holds the edited lines, is analysed again too;
    # the findings just above the class stay where they are.
    old = HEADER + (
        "def train(w):\n    with tf.GradientTape() as tape:\n        y = np.floor(w)\n    return tape.gradient(y, w)\n"
        "class Model:\n    def step(self, x):\n        Model.count = 1\n        with tf.GradientTape() as tape:\n"
        "            z = np.round(x)\n        return tape.gradient(z, x)\n"
    )
    new = old.replace("        Model.count = 1\n", "        Model.count = 1  # " + "x" * 200 + "\n")
    plan = slicing.plan_edit(old, new)
    header = new.index("class Model:")
    assert plan is not None and any(low <= header < high for low, high in plan.fresh)  # the class's rest
    previous = engine.check_source(old, UNSAFE)
    assert len(previous) == 2
    assert engine.check_edited_source(new, UNSAFE, old, previous) == engine.check_source(new, UNSAFE)
