"""Fuzzing: the project's own files and the corpus, randomly mutated, never crash tapefix.

A crash is any exception other than a reported parse error (``SourceError``). Each mutated module also
gets a tape block that calls the module's own functions, so the analysis really runs on it (the text
prefilter would skip most files otherwise). The command line gets a few mutated trees as well: it must
exit with 0, 1 or 2 and print no traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapefix import engine
from tapefix.cli import main
from tapefix.types import Config, SourceError

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    [*ROOT.glob("tapefix/**/*.py"), *ROOT.glob("corpus/*.py"), *ROOT.glob("tests/test_*.py")],
    key=lambda p: str(p),
)
TEXTS = [p.read_text(encoding="utf-8") for p in SOURCES]
SNIPPETS = [
    "with tf.GradientTape() as tape:\n",
    "    ",
    "\t",
    "\r\n",
    "\r",
    "np.floor(",
    "1 / ",
    "if x > 0:\n",
    "tf.stop_gradient(",
    "tape.watch(x)\n",
    "with tape.stop_recording():\n",
    ")",
    "]",
    "lambda v: ",
    "# tapefix: ignore\n",
    "ü½\u2028",
    "\x0c",
    "\\\n",
    '"""',
    "async ",
    "yield ",
    "*",
    "**kwargs",
    ":=",
]


def tape_calling(text: str) -> str:
    names = re.findall(r"^\s*def (\w+)\(", text, flags=re.MULTILINE)[:6]
    calls = "".join(f"    v{index} = {name}(x, x)\n" for index, name in enumerate(names))
    return (
        "\nimport numpy as np\nimport tensorflow as tf\nx = tf.Variable([1.0, 2.0])\n"
        "with tf.GradientTape() as tape:\n" + (calls or "    y = x\n") + "    z = np.floor(x) / x\n"
    )


@st.composite
def mutated(draw) -> str:
    text = draw(st.sampled_from(TEXTS))
    text = text + tape_calling(text)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["delete", "insert", "duplicate", "swap", "indent", "truncate"]))
        if not text:
            break
        at = draw(st.integers(0, len(text) - 1))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif kind == "insert":
            text = text[:at] + draw(st.sampled_from(SNIPPETS)) + text[at:]
        else:
            lines = text.splitlines(keepends=True)
            index = draw(st.integers(0, max(0, len(lines) - 1)))
            if kind == "duplicate" and lines:
                lines.insert(index, lines[index])
            elif kind == "swap" and len(lines) > 1:
                other = draw(st.integers(0, len(lines) - 1))
                lines[index], lines[other] = lines[other], lines[index]
            elif kind == "indent" and lines:
                lines[index] = draw(st.sampled_from(["    ", "\t", " "])) + lines[index]
            elif kind == "truncate":
                lines = lines[: index + 1]
            text = "".join(lines)
    return text


#: whole statements inserted at a line's own indentation: the module mostly still parses, so the
#: analysis (not only the parser) meets them in every kind of place
STATEMENTS = [
    "y = np.floor(x)",
    "z = 1 / x",
    "if x > 0:\n{indent}    x = x * 2",
    "with tf.GradientTape() as tape:\n{indent}    y = tf.reduce_sum(x) / x",
    "with tape.stop_recording():\n{indent}    pass",
    "tape.watch(x)",
    "x = tf.stop_gradient(x)",
    "return np.round(x)",
    "yield 1 / x",
    "global x",
    "del x",
    "x: tf.Tensor = tf.Variable(1.0)",
    "x = [v for v in np.floor(x)]",
    "lambda: 1 / x",
    "def inner(v):\n{indent}    return np.floor(v) / v",
    "class Local:\n{indent}    def call(self, v):\n{indent}        return 1 / v",
]


@st.composite
def reshaped(draw) -> str:
    text = draw(st.sampled_from(TEXTS))
    lines = (text + tape_calling(text)).splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 5))):
        index = draw(st.integers(0, len(lines) - 1))
        if draw(st.booleans()) and len(lines) > 1:
            del lines[index]
            continue
        indent = lines[index][: len(lines[index]) - len(lines[index].lstrip(" \t"))]
        statement = draw(st.sampled_from(STATEMENTS)).format(indent=indent)
        newline = draw(st.sampled_from(["\n", "\r\n"]))
        # Continuation lines carry their indentation already ({indent} in STATEMENTS).
        lines.insert(index, indent + statement.replace("\n", newline) + newline)
    return "".join(lines)


def survives(source: str) -> None:
    for config in (Config(), Config(unsafe_fixes=True)):
        try:
            engine.check_source(source, config)
            result = engine.fix_source(source, config)
        except SourceError:
            continue
        if result.changed:
            engine.parse(result.fixed_source)  # a fix never produces code that does not parse


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_files_never_crash_the_engine(source: str) -> None:
    survives(source)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(reshaped())
def test_statements_inserted_anywhere_never_crash_the_engine(source: str) -> None:
    survives(source)


@pytest.mark.parametrize("path", SOURCES[:: max(1, len(SOURCES) // 12)], ids=lambda p: p.name)
def test_each_unmutated_file_with_a_tape_survives(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    survives(text + tape_calling(text))


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(mutated(), min_size=2, max_size=4), st.sampled_from(["--check", "--diff", "--unsafe-fixes"]))
def test_the_command_line_reports_and_never_crashes(tmp_path_factory, sources: List[str], flag: str) -> None:
    tree = tmp_path_factory.mktemp("fuzz")
    for index, source in enumerate(sources):
        (tree / f"m{index}.py").write_text(source, encoding="utf-8", newline="")
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([flag, "--no-cache", "-j", "2", str(tree)])
    assert code in (0, 1, 2)
    assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue()
