"""Positions are true in every output after odd layouts: lines holding only a backslash, form feeds,
CR-only and CRLF files. Each case is checked in the text report, JSON, SARIF, the language server's
diagnostic and quick fix, and the fixed file (tapefix.layout keeps libcst's positions exact).

The expected place of the finding is computed from the source itself, never from tapefix."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Tuple

import pytest

from tapefix.cli import main

FIX = "tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))"
TEMPLATE = (
    "import numpy as np\n"
    "import tensorflow as tf\n"
    "x = tf.Variable(3.7)\n"
    "with tf.GradientTape() as tape:\n"
    "    z = 1\n"
    "{middle}"
    "    y = np.floor(x)\n"
    "grad = tape.gradient(y, x)\n"
)
LAYOUTS = {
    "plain": "",
    "lone-backslash": "    \\\n",
    "lone-backslash-at-column-0": "\\\n",
    "two-lone-backslashes": "    \\\n    \\\n",
    "lone-backslash-then-blank": "    \\\n\n",
    "form-feed-then-backslash": "\f\\\n",
    "form-feed-line": "\f\n",
    "backslash-joining-code": "    w = 1 + \\\n    \\\n    2\n",
    "comment-ending-in-backslash": "    # a comment \\\n",
}
NEWLINES = {"lf": "\n", "cr": "\r", "crlf": "\r\n"}
CASES = [pytest.param(layout, newline, id=f"{layout}-{newline}") for layout in LAYOUTS for newline in NEWLINES]


def _source(layout: str, newline: str) -> str:
    return TEMPLATE.format(middle=LAYOUTS[layout]).replace("\n", NEWLINES[newline])


def _expected(source: str) -> Tuple[int, int, int]:
    """(1-based line, 1-based column, offset) of ``np.floor(x)``, counting line breaks as Python does
    (a form feed is not one, whatever str.splitlines thinks)."""
    offset = source.index("np.floor(x)")
    breaks = list(re.finditer(r"\r\n|\r|\n", source[:offset]))
    line_start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, offset - line_start + 1, offset


def _write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "case.py"
    path.write_bytes(source.encode("utf-8"))
    return path


@pytest.mark.parametrize(("layout", "newline"), CASES)
def test_text_json_and_sarif_point_at_the_call(tmp_path: Path, capsys, layout: str, newline: str) -> None:
    source = _source(layout, newline)
    line, column, _ = _expected(source)
    path = _write(tmp_path, source)
    main(["--check", "--no-cache", str(path)])
    assert f"case.py:{line}:{column}: TF101" in capsys.readouterr().out
    main(["--check", "--no-cache", "--format", "json", str(path)])
    (finding,) = json.loads(capsys.readouterr().out)["findings"]
    assert finding["range"]["start"] == {"line": line, "column": column}
    assert finding["fix"]["edits"][0]["start"] == {"line": line, "column": column}
    main(["--check", "--no-cache", "--format", "sarif", str(path)])
    (result,) = json.loads(capsys.readouterr().out)["runs"][0]["results"]
    region = result["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (line, column)


@pytest.mark.parametrize(("layout", "newline"), CASES)
def test_the_fixed_file_changes_only_the_call(tmp_path: Path, layout: str, newline: str) -> None:
    source = _source(layout, newline)
    path = _write(tmp_path, source)
    assert main(["--unsafe-fixes", "--no-cache", str(path)]) == 0
    assert path.read_bytes().decode("utf-8") == source.replace("np.floor(x)", FIX)


@pytest.mark.parametrize(("layout", "newline"), CASES)
def test_the_language_server_quick_fix_is_exact(layout: str, newline: str) -> None:
    pytest.importorskip("pygls")
    from tapefix.lsp import Settings, analyse
    from tapefix.types import Config

    source = _source(layout, newline)
    line, column, offset = _expected(source)
    analysis = analyse(source, 1, Config(unsafe_fixes=True), Settings())
    (diagnostic,) = analysis.diagnostics
    assert (diagnostic.range.start.line, diagnostic.range.start.character) == (line - 1, column - 1)
    (edit,) = diagnostic.data["fix"]["edits"]
    # As an editor reads a range: lines broken at CRLF, CR or LF (the protocol's rule), ASCII columns.
    starts = [0, *(m.end() for m in re.finditer(r"\r\n|\r|\n", source))]
    start = starts[edit["range"]["start"]["line"]] + edit["range"]["start"]["character"]
    end = starts[edit["range"]["end"]["line"]] + edit["range"]["end"]["character"]
    assert (start, end) == (offset, offset + len("np.floor(x)"))
    fixed = source[:start] + edit["newText"] + source[end:]
    ast.parse(fixed)  # the editor's buffer stays valid Python
    assert fixed == source.replace("np.floor(x)", FIX)


@pytest.mark.parametrize("newline", list(NEWLINES))
def test_a_form_feed_in_the_indentation_of_code_is_one_clear_error(tmp_path: Path, capsys, newline: str) -> None:
    source = _source("plain", newline).replace("    y = np.floor", "\f    y = np.floor")
    path = _write(tmp_path, source)
    assert main(["--unsafe-fixes", "--no-cache", str(path)]) == 2
    assert path.read_bytes().decode("utf-8") == source
    err = capsys.readouterr().err
    assert "case.py:6:1: error: tapefix cannot keep positions exact here: a form feed" in err
    assert "tapefix bug" not in err

    pytest.importorskip("pygls")
    from tapefix.lsp import Settings, analyse
    from tapefix.types import Config

    analysis = analyse(source, 1, Config(unsafe_fixes=True), Settings())
    assert analysis.diagnostics == [] and not analysis.parsed  # no quick fix that would write garbage
