"""The command line, driven through main(argv) as a user would run it."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from tapefix.cli import main

BUGGY = """\
import numpy as np
import tensorflow as tf

x = tf.Variable(3.7)
with tf.GradientTape() as tape:
    y = np.floor(x)

grad = tape.gradient(y, x)
"""
CLEAN = """\
import tensorflow as tf

x = tf.Variable(3.7)
with tf.GradientTape() as tape:
    y = x * x
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "train.py").write_text(BUGGY)
    (tmp_path / "pkg" / "clean.py").write_text(CLEAN)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "skip.py").write_text(BUGGY)
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "pyvenv.cfg").write_text("")
    (tmp_path / "venv" / "skip.py").write_text(BUGGY)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "skip.py").write_text(BUGGY)
    return tmp_path


def test_diff_prints_the_diff_and_writes_nothing(project, capsys):
    code = main(["--diff", "--unsafe-fixes", str(project)])
    out = capsys.readouterr().out
    assert code == 1
    assert "-    y = np.floor(x)" in out
    assert "+    y = tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))" in out
    assert "skip.py" not in out  # hidden folders, virtual environments and __pycache__ are skipped
    assert (project / "pkg" / "train.py").read_text() == BUGGY


def test_safe_mode_leaves_unsafe_fixes_and_says_how_to_get_them(project, capsys):
    code = main([str(project / "pkg")])
    captured = capsys.readouterr()
    assert code == 1
    assert (project / "pkg" / "train.py").read_text() == BUGGY
    assert "train.py:6:9: TF101" in captured.out
    assert "1 more fix available with --unsafe-fixes" in captured.err


def test_in_place_unsafe_fix_rewrites_and_second_run_is_clean(project, capsys):
    assert main(["--unsafe-fixes", str(project / "pkg")]) == 0
    fixed = (project / "pkg" / "train.py").read_text()
    assert "tf.stop_gradient(tf.floor(x))" in fixed
    assert "[fixed (unsafe fix)]" in capsys.readouterr().out
    assert main(["--unsafe-fixes", str(project / "pkg")]) == 0
    assert (project / "pkg" / "train.py").read_text() == fixed


def test_check_reports_and_writes_nothing(project, capsys):
    assert main(["--check", str(project / "pkg" / "clean.py")]) == 0
    assert main(["--check", str(project / "pkg")]) == 1
    assert (project / "pkg" / "train.py").read_text() == BUGGY


def test_file_that_does_not_parse_is_reported_and_others_still_processed(project, capsys):
    (project / "pkg" / "broken.py").write_text("import tensorflow as tf\nwith tf.GradientTape() as t:\n    x = = 1\n")
    code = main(["--unsafe-fixes", str(project / "pkg")])
    err = capsys.readouterr().err
    assert code == 2
    assert "broken.py:3:" in err and "does not parse" in err
    assert "tf.stop_gradient" in (project / "pkg" / "train.py").read_text()
    assert (project / "pkg" / "broken.py").read_text().endswith("x = = 1\n")


def test_bad_path_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path / "missing.py")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_stdin_in_fixed_module_out(monkeypatch, capsysbinary):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BUGGY.encode())))
    assert main(["-", "--unsafe-fixes"]) == 0
    out = capsysbinary.readouterr().out.decode()
    assert out == BUGGY.replace("np.floor(x)", "tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))")


def test_stdin_that_does_not_parse_echoes_the_input(monkeypatch, capsysbinary):
    source = b"with tf.GradientTape() as t:\n    x = = 1\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(source)))
    assert main(["-"]) == 2
    captured = capsysbinary.readouterr()
    assert captured.out == source
    assert b"does not parse" in captured.err
