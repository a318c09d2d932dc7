"""Jupyter notebooks: cells analysed as one module, fixed cell by cell, everything else kept byte for byte."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, List, Union

import pytest

from tapefix import notebook
from tapefix.cli import main

FIXED_FLOOR = "tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))"


def code(source: Union[str, List[str]], count: Any = None, outputs: Any = ()) -> Dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": count,
        "metadata": {},
        "outputs": list(outputs),
        "source": source,
    }


def lines(text: str) -> List[str]:
    return text.splitlines(keepends=True)


def make_notebook(*cells: Dict[str, Any], language: str = "python") -> Dict[str, Any]:
    return {
        "cells": list(cells),
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": language, "name": "python3"},
            "language_info": {"name": language, "version": "3.11.0"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def jupyter_text(document: Dict[str, Any]) -> str:
    """As Jupyter writes a notebook: indent 1, sorted keys, non-ASCII as is, a final newline."""
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


STREAM = {"name": "stdout", "output_type": "stream", "text": ["loss: 0.25 → 0.12\n"]}
TRAINING = make_notebook(
    {"cell_type": "markdown", "metadata": {}, "source": lines("# Training\nRounding kills the gradient.")},
    code(lines("%matplotlib inline\nimport numpy as np\nimport tensorflow as tf\n!pip install -q tensorflow"), 1),
    code(lines("def quantize(v):\n    return np.floor(v)"), 2, [STREAM]),
    code(
        lines(
            "%%time\nx = tf.Variable(3.7)\nwith tf.GradientTape() as tape:\n    y = quantize(x)\n    z = np.floor(x)\n"
        ),
        3,
    ),
    code("%%bash\necho hello", None),
    {"cell_type": "raw", "metadata": {"format": "text/plain"}, "source": ["raw text"]},
)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


# ----------------------------------------------------------------------------- the pure part
def test_cells_become_one_module_with_magics_masked_and_lines_mapped():
    script = notebook.to_script(jupyter_text(TRAINING))
    assert [span.cell for span in script.spans] == [2, 3, 4]  # markdown, %%bash and raw cells left out
    assert "%matplotlib" not in script.text and "!pip" not in script.text and "%%time" not in script.text
    assert script.locate(script.text.splitlines().index("    z = np.floor(x)") + 1) == (4, 5)
    assert script.unmask(script.text).count("%matplotlib inline") == 1
    texts = notebook.split(script, script.text)
    assert texts == [notebook.cell_text(TRAINING["cells"][i]) for i in (1, 2, 3)]


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("%load_ext autoreload\n%autoreload 2\nimport tensorflow as tf", id="line-magics"),
        pytest.param("files = !ls\nlisting = %sx ls\nprint(files)", id="assigned-magics"),
        pytest.param("import tensorflow as tf\ntf.floor?\n?tf.round", id="help"),
        pytest.param("if True:\n    %time print(1)\n    !echo \\\n      continued\nx = 1", id="indented-and-continued"),
        pytest.param("%%timeit -n 1\nsum(range(10))", id="python-cell-magic"),
        pytest.param("x = (1\n     % 2)", id="modulo-at-line-start-is-python"),
    ],
)
def test_magics_round_trip_unchanged(source):
    text = jupyter_text(make_notebook(code(lines(source))))
    script = notebook.to_script(text)
    compile(script.text, "<notebook>", "exec")  # the masked module is plain Python
    assert notebook.split(script, script.text) == [source]
    assert notebook.from_script(text, script, script.text) == text


@pytest.mark.parametrize(
    "dump",
    [
        pytest.param(lambda d: json.dumps(d, indent=1, sort_keys=True, ensure_ascii=False) + "\n", id="jupyter"),
        pytest.param(lambda d: json.dumps(d, indent=2, ensure_ascii=True), id="ascii-escaped"),
    ],
)
def test_places_in_the_joined_module_map_to_the_notebook_file(dump):
    document = make_notebook(
        code(lines("%time import tensorflow as tf\nwith tf.GradientTape() as tape:\n    x = 'é'; y = tf.floor(x)")),
        # Source as a list of lines above; as one string here, where every line sits on one JSON line.
        code("z = 1\nb = 'ü'; w = tf.round(z)"),
    )
    text = dump(document)
    script = notebook.to_script(text)
    file_lines = text.split("\n")
    module_lines = script.text.split("\n")
    for target in ("tf.floor(x)", "tf.round(z)"):
        (line,) = [n for n, t in enumerate(module_lines, start=1) if target in t]
        file_line, column = script.in_file(line, module_lines[line - 1].index(target))
        assert file_lines[file_line - 1][column - 1 :].startswith(target)
    assert script.in_file(script.spans[1].first_line - 1, 0) is None  # the boundary line is nowhere in the file


def test_a_fix_that_moves_a_cell_boundary_leaves_the_notebook_alone():
    text = jupyter_text(make_notebook(code("a = 1"), code("b = 2")))
    script = notebook.to_script(text)
    with pytest.raises(notebook.NotebookError, match="cell boundary"):
        notebook.from_script(text, script, script.text.replace("# %% tapefix cell 2\n", ""))


def test_not_a_notebook():
    with pytest.raises(notebook.NotebookError, match="not valid JSON"):
        notebook.to_script("{")
    with pytest.raises(notebook.NotebookError, match="no list of cells"):
        notebook.to_script('{"worksheets": []}')


# ----------------------------------------------------------------------------- through the command line
def test_check_reports_cells_and_lines_and_sees_across_cells(workspace, capsys):
    path = write(workspace / "train.ipynb", jupyter_text(TRAINING))
    assert main(["--check", "train.ipynb"]) == 1
    out = capsys.readouterr().out.splitlines()
    # The function in cell 3 is run by the tape in cell 4: one namespace, one module.
    assert out[0].startswith("train.ipynb:cell 3:2:12: TF101 ")
    assert "in a function reached through a call" in out[0]
    assert out[1].startswith("train.ipynb:cell 4:5:9: TF101 ")
    assert len(out) == 2
    assert path.read_text(encoding="utf-8") == jupyter_text(TRAINING)


def test_fix_rewrites_only_the_changed_cells_and_keeps_everything_else(workspace, capsys):
    original = jupyter_text(TRAINING)
    path = write(workspace / "train.ipynb", original)
    assert main(["--unsafe-fixes", "train.ipynb"]) == 0
    fixed_text = path.read_text(encoding="utf-8")
    expected = copy.deepcopy(TRAINING)
    expected["cells"][2]["source"] = lines(f"def quantize(v):\n    return {FIXED_FLOOR.replace('x', 'v')}")
    expected["cells"][3]["source"][4] = f"    z = {FIXED_FLOOR}\n"
    assert fixed_text == jupyter_text(expected)  # outputs, metadata, layout and the magics all survive
    assert sum(a != b for a, b in zip(original.splitlines(), fixed_text.splitlines())) == 2
    assert main(["--check", "--unsafe-fixes", "train.ipynb"]) == 0


@pytest.mark.parametrize(
    "dump",
    [
        pytest.param(lambda d: json.dumps(d, indent=2, ensure_ascii=False) + "\n", id="indent-2-file-key-order"),
        pytest.param(lambda d: json.dumps(d, indent=1, sort_keys=True, ensure_ascii=True), id="ascii-no-final-newline"),
        pytest.param(lambda d: json.dumps(d, separators=(",", ":")), id="compact"),
    ],
)
def test_json_layout_survives(workspace, capsys, dump):
    document = make_notebook(
        code("import numpy as np\nimport tensorflow as tf\nx = tf.Variable(1.5)  # é"),  # source as one string
        code(lines("with tf.GradientTape() as tape:\n    y = np.floor(x)"), 7, [STREAM]),
    )
    document["metadata"] = {"z_last": 1, "a_first": {"ü": True}, **document["metadata"]}
    path = write(workspace / "nb.ipynb", dump(document))
    assert main(["--unsafe-fixes", "nb.ipynb"]) == 0
    expected = copy.deepcopy(document)
    expected["cells"][1]["source"][1] = f"    y = {FIXED_FLOOR}"
    assert path.read_text(encoding="utf-8") == dump(expected)


def test_layout_that_cannot_be_reproduced_is_never_rewritten(workspace, capsys):
    document = make_notebook(
        code(
            lines(
                "import numpy as np\nimport tensorflow as tf\nx = tf.Variable(1.5)\n"
                "with tf.GradientTape() as tape:\n    y = np.floor(x)"
            )
        )
    )
    text = json.dumps(document, indent=1).replace('"cells": [', '"cells":   [')
    path = write(workspace / "odd.ipynb", text)
    assert main(["--check", "odd.ipynb"]) == 1  # reading works whatever the layout
    capsys.readouterr()
    assert main(["--unsafe-fixes", "odd.ipynb"]) == 2
    assert "odd.ipynb: error: its JSON layout cannot be reproduced exactly" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == text


def test_diff_shows_cells_with_magics_restored(workspace, capsys):
    write(workspace / "train.ipynb", jupyter_text(TRAINING))
    assert main(["--diff", "--unsafe-fixes", "train.ipynb"]) == 1
    out = capsys.readouterr().out
    assert "--- a/train.ipynb" in out
    assert " # %% tapefix cell 4\n %%time\n" in out
    assert f"+    z = {FIXED_FLOOR}\n" in out
    assert "tapefix magic" not in out


def test_directory_walk_picks_up_notebooks(workspace, capsys):
    (workspace / "notebooks").mkdir()
    write(workspace / "notebooks" / "train.ipynb", jupyter_text(TRAINING))
    write(workspace / "notebooks" / ".ipynb_checkpoints.ipynb", jupyter_text(TRAINING))
    assert main(["--check", "."]) == 1
    out = capsys.readouterr().out
    assert out.count(str(Path("notebooks/train.ipynb")) + ":cell") == 2
    assert "checkpoints" not in out


def test_cell_that_does_not_parse_is_an_error_naming_the_cell(workspace, capsys):
    write(
        workspace / "bad.ipynb",
        jupyter_text(
            make_notebook(code("import tensorflow as tf"), code("with tf.GradientTape() as tape:\n    x = (1,\ny = 2"))
        ),
    )
    write(workspace / "ok.ipynb", jupyter_text(TRAINING))
    assert main(["--check", "."]) == 2
    captured = capsys.readouterr()
    assert "bad.ipynb:cell 2:" in captured.err and "does not parse" in captured.err
    assert "ok.ipynb:cell 4:5:9" in captured.out  # the other notebook is still checked


def test_notebook_in_another_language_is_left_alone(workspace, capsys):
    document = make_notebook(code(lines("with tf.GradientTape() as tape:\n    y = np.floor(x)")), language="julia")
    write(workspace / "julia.ipynb", jupyter_text(document))
    assert main(["--check", "julia.ipynb"]) == 0
    assert capsys.readouterr().out == ""


def test_broken_notebook_json_is_an_error(workspace, capsys):
    write(workspace / "broken.ipynb", '{"cells": [')
    assert main(["--check", "broken.ipynb"]) == 2
    assert "broken.ipynb: error: is not valid JSON" in capsys.readouterr().err
