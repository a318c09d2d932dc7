"""Terminal manners: colour, progress bar, --quiet, --exit-zero, relative paths, the summary line,
--explain and --list-rules. Terminals are real pseudo-terminals around a real tapefix process."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest

from tapefix.cli import main
from tapefix.rules import ALL_RULES

BUGGY = """\
import numpy as np
import tensorflow as tf

x = tf.Variable(3.7)
with tf.GradientTape() as tape:
    y = np.floor(x)
"""
ESC = "\x1b["


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def run_tapefix(
    args: Tuple[str, ...], cwd: Path, tty: str, env: Optional[Dict[str, str]] = None
) -> tuple[int, str, str]:
    """Run tapefix in a subprocess with ``tty`` ("stdout", "stderr" or "") on a pseudo-terminal."""
    environment = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    environment.update(env or {})
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "tapefix", *args],
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=slave if tty == "stdout" else subprocess.PIPE,
            stderr=slave if tty == "stderr" else subprocess.PIPE,
        )
        os.close(slave)
        terminal = _read_all(master)
        out, err = process.communicate(timeout=120)
    finally:
        os.close(master)
    out_text = terminal if tty == "stdout" else out.decode()
    err_text = terminal if tty == "stderr" else err.decode()
    return process.returncode, out_text, err_text


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "train.py").write_text(BUGGY)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ----------------------------------------------------------------------------- colour
@pytest.mark.slow
def test_colour_on_a_terminal_only_and_never_with_no_color(project):
    code, out, _ = run_tapefix(("--check", "pkg"), project, tty="stdout")
    assert code == 1
    assert ESC in out and "TF101" in out
    code, out, _ = run_tapefix(("--check", "pkg"), project, tty="stdout", env={"NO_COLOR": "1"})
    assert code == 1
    assert ESC not in out and "pkg/train.py:6:9: TF101" in out
    code, out, _ = run_tapefix(("--check", "pkg"), project, tty="")
    assert ESC not in out and "pkg/train.py:6:9: TF101" in out


# ----------------------------------------------------------------------------- progress bar
@pytest.fixture
def big_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for index in range(400):
        folder = tree / f"m{index // 50}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.py").write_text(f"value = {index}\n")
    (tree / "m0" / "train.py").write_text(BUGGY)
    return tree


@pytest.mark.slow
def test_progress_bar_on_a_terminal_for_big_trees(big_tree):
    code, out, err = run_tapefix(("--check", "."), big_tree, tty="stderr", env={"NO_COLOR": "1"})
    assert code == 1
    assert "401/401 files" in err and "\r[" in err
    assert ESC + "K" in err  # the bar is wiped before the summary line
    assert err.rstrip().endswith("1 more fix available with --unsafe-fixes")
    assert "files" not in out


@pytest.mark.slow
def test_no_progress_bar_off_a_terminal_with_quiet_or_for_small_trees(big_tree, project):
    _, _, err = run_tapefix(("--check", "."), big_tree, tty="")
    assert "401/401" not in err
    _, _, err = run_tapefix(("--check", "--quiet", "."), big_tree, tty="stderr")
    assert err == ""
    _, _, err = run_tapefix(("--check", "pkg"), project, tty="stderr")
    assert "files" not in err and "\r" not in err.replace("\r\n", "\n")


# ----------------------------------------------------------------------------- quiet, exit-zero, summary
def test_quiet_prints_findings_but_no_summary(project, capsys):
    assert main(["--check", "--quiet", "pkg"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(str(Path("pkg/train.py")) + ":6:9: TF101")
    assert captured.err == ""


def test_summary_line_comes_last(project, capsys):
    (project / "pkg" / "clean.py").write_text("x = 1\n")
    assert main(["--check", "pkg"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "1 more fix available with --unsafe-fixes"
    assert main(["--check", "pkg/clean.py"]) == 0
    assert capsys.readouterr().err == "no gradient-breaking idioms found in 1 file\n"


def test_exit_zero_with_findings_but_not_with_errors(project, capsys):
    assert main(["--check", "--exit-zero", "pkg"]) == 0
    assert "TF101" in capsys.readouterr().out
    assert main(["--diff", "--exit-zero", "--unsafe-fixes", "pkg"]) == 0
    (project / "pkg" / "broken.py").write_text("import tensorflow as tf\nwith tf.GradientTape() as t:\n  x = (\n")
    assert main(["--check", "--exit-zero", "pkg"]) == 2


# ----------------------------------------------------------------------------- paths
def test_paths_are_shown_relative_to_the_current_folder(project, capsys, monkeypatch):
    assert main(["--check", str(project / "pkg")]) == 1
    assert capsys.readouterr().out.startswith(f"{Path('pkg/train.py')}:6:9:")
    monkeypatch.chdir(project / "pkg")
    assert main(["--check", str(project / "pkg" / "train.py")]) == 1
    assert capsys.readouterr().out.startswith("train.py:6:9:")
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["--check", "../pkg"]) == 1
    assert capsys.readouterr().out.startswith(f"{project / 'pkg' / 'train.py'}:6:9:")


# ----------------------------------------------------------------------------- explain and list-rules
def test_explain_prints_the_rule_docs(capsys):
    assert main(["--explain", "TF101"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# TF101 rounding-on-tensor\n")
    for heading in ("## What it does", "## Why is this bad?", "## Example", "## Use instead", "## Fix safety"):
        assert heading in out
    assert main(["--explain", "tf103"]) == 0
    assert capsys.readouterr().out.startswith("# TF103 ")


def test_explain_unknown_code_is_an_error(capsys):
    assert main(["--explain", "TF999"]) == 2
    err = capsys.readouterr().err
    assert "no rule 'TF999'" in err and "TF101" in err


def test_list_rules_prints_code_name_fix_and_safety(capsys):
    assert main(["--list-rules"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["Code", "Name", "Fix", "Safety", "Message"]
    assert len(lines) == 1 + len(ALL_RULES)
    for line, rule in zip(lines[1:], ALL_RULES):
        fields = line.split()
        assert fields[:2] == [rule.CODE, rule.NAME]
        assert (" yes " in line) == rule.has_fix()
        assert f" {rule.SAFETY.value} " in line
