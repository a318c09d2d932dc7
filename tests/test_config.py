"""[tool.tapefix] in pyproject.toml, through the real command line, and the loader the language server uses."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from tapefix.cli import main
from tapefix.config import ConfigError, load_for
from tapefix.types import Config

# One finding of TF101 (line 6) and one of TF103 (line 7), both with unsafe fixes.
BUGGY = """\
import numpy as np
import tensorflow as tf

x = tf.Variable(3.7)
with tf.GradientTape() as tape:
    y = np.floor(x)
    w = x / y
"""


def codes_reported(out: str) -> List[str]:
    return sorted(line.split(": ")[1].split()[0] for line in out.splitlines() if ": TF" in line)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(BUGGY)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def configure(folder: Path, body: str) -> Path:
    path = folder / "pyproject.toml"
    path.write_text("[project]\nname = 'demo'\n\n[tool.tapefix]\n" + body)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- selection
@pytest.mark.parametrize(
    "body, argv, expected",
    [
        pytest.param("", [], ["TF101", "TF103"], id="empty-table-means-all-rules"),
        pytest.param('select = ["TF101"]\n', [], ["TF101"], id="select"),
        pytest.param('select = ["TF1"]\n', [], ["TF101", "TF103"], id="select-prefix"),
        pytest.param('ignore = ["TF103"]\n', [], ["TF101"], id="ignore"),
        pytest.param('select = ["TF101"]\nextend-select = ["TF103"]\n', [], ["TF101", "TF103"], id="extend-select"),
        pytest.param('ignore = ["TF101"]\nextend-ignore = ["TF103"]\n', [], [], id="extend-ignore"),
        pytest.param('select = ["ALL"]\nignore = ["TF101"]\n', [], ["TF103"], id="select-all"),
        pytest.param('select = ["TF101"]\n', ["--select", "TF103"], ["TF103"], id="flag-select-overrides"),
        pytest.param('ignore = ["TF101"]\n', ["--ignore", "TF103"], ["TF101"], id="flag-ignore-overrides"),
        pytest.param(
            'ignore = ["TF101"]\nextend-ignore = ["TF103"]\n',
            ["--ignore", "TF113"],
            ["TF101"],
            id="extend-ignore-survives-flag",
        ),
        pytest.param("", ["--select", "TF101,TF103", "--ignore", "TF103"], ["TF101"], id="comma-separated-flags"),
    ],
)
def test_rule_selection(project, capsys, body, argv, expected):
    configure(project, body)
    code, out, _ = run(capsys, "--check", *argv, "src")
    assert codes_reported(out) == expected
    assert code == (1 if expected else 0)


def test_config_is_found_by_walking_up_from_the_path_given(project, capsys, monkeypatch):
    configure(project, 'select = ["TF103"]\n')
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _, out, _ = run(capsys, "--check", str(project / "src" / "train.py"))
    assert codes_reported(out) == ["TF103"]


def test_pyproject_without_a_tapefix_table_is_passed_over(project, capsys):
    configure(project, 'select = ["TF103"]\n')
    (project / "src" / "pyproject.toml").write_text("[tool.black]\nline-length = 100\n")
    _, out, _ = run(capsys, "--check", "src")
    assert codes_reported(out) == ["TF103"]


def test_each_file_gets_its_nearest_configuration(project, capsys):
    configure(project, 'select = ["TF101"]\n')
    (project / "sub").mkdir()
    (project / "sub" / "model.py").write_text(BUGGY)
    configure(project / "sub", 'select = ["TF103"]\n')
    _, out, _ = run(capsys, "--check", ".")
    assert sorted(line.split(":")[0] + " " + line.split(": ")[1][:5] for line in out.splitlines()) == [
        f"{Path('src/train.py')} TF101",
        f"{Path('sub/model.py')} TF103",
    ]


def test_config_flag_names_the_file_to_use(project, capsys):
    configure(project, 'select = ["TF101"]\n')
    other = project / "ci"
    other.mkdir()
    configure(other, 'select = ["TF103"]\n')
    _, out, _ = run(capsys, "--check", "--config", str(other / "pyproject.toml"), "src")
    assert codes_reported(out) == ["TF103"]


# ----------------------------------------------------------------------------- unsafe-fixes
def test_unsafe_fixes_from_config_apply_in_place(project, capsys):
    configure(project, "unsafe-fixes = true\n")
    code, out, _ = run(capsys, "src")
    assert code == 0
    assert "tf.stop_gradient(tf.floor(x))" in (project / "src" / "train.py").read_text()
    assert "[fixed (unsafe fix)]" in out


def test_no_unsafe_fixes_flag_overrides_config(project, capsys):
    configure(project, "unsafe-fixes = true\n")
    code, _, err = run(capsys, "--no-unsafe-fixes", "src")
    assert code == 1
    assert (project / "src" / "train.py").read_text() == BUGGY
    assert "2 more fixes available with --unsafe-fixes" in err


# ----------------------------------------------------------------------------- exclude and per-file-ignores
def test_exclude_leaves_out_folders_and_files_even_when_named(project, capsys):
    (project / "generated").mkdir()
    (project / "generated" / "model.py").write_text(BUGGY)
    configure(project, 'exclude = ["generated"]\n')
    _, out, _ = run(capsys, "--check", ".")
    assert "generated" not in out and "train.py" in out
    code, out, err = run(capsys, "--check", "generated/model.py")
    assert (code, out) == (0, "")
    assert "in 0 files" in err


def test_extend_exclude_survives_the_exclude_flag(project, capsys):
    for folder in ("a", "b", "c"):
        (project / folder).mkdir()
        (project / folder / "m.py").write_text(BUGGY)
    configure(project, 'exclude = ["a"]\nextend-exclude = ["b/*.py"]\n')
    _, out, _ = run(capsys, "--check", "--exclude", "c,src", ".")
    files = {line.split(":")[0] for line in out.splitlines()}
    assert files == {str(Path("a/m.py"))}


def test_per_file_ignores(project, capsys):
    (project / "tests").mkdir()
    (project / "tests" / "test_model.py").write_text(BUGGY)
    (project / "legacy.py").write_text(BUGGY)
    configure(
        project,
        '[tool.tapefix.per-file-ignores]\n"tests/*" = ["TF103"]\n'
        '[tool.tapefix.extend-per-file-ignores]\n"legacy.py" = ["TF1"]\n',
    )
    _, out, _ = run(capsys, "--check", ".")
    found = sorted((line.split(":")[0], line.split(": ")[1][:5]) for line in out.splitlines())
    assert found == [
        (str(Path("src/train.py")), "TF101"),
        (str(Path("src/train.py")), "TF103"),
        (str(Path("tests/test_model.py")), "TF101"),
    ]


# ----------------------------------------------------------------------------- bad configuration
@pytest.mark.parametrize(
    "body, key, allowed",
    [
        pytest.param('selekt = ["TF101"]\n', "selekt", "allowed keys are select, extend-select", id="unknown-key"),
        pytest.param("unsafe_fixes = true\n", "unsafe_fixes", "did you mean 'unsafe-fixes'", id="underscore-key"),
        pytest.param('select = "TF101"\n', "select", "expected a list of strings, got a string", id="not-a-list"),
        pytest.param(
            'ignore = ["XY9"]\n', "ignore", "unknown rule code 'XY9'; expected a rule code or prefix", id="code"
        ),
        pytest.param("unsafe-fixes = 1\n", "unsafe-fixes", "expected true or false, got an integer", id="not-a-bool"),
        pytest.param('per-file-ignores = ["x"]\n', "per-file-ignores", "expected a table of glob", id="not-a-table"),
        pytest.param(
            '[tool.tapefix.per-file-ignores]\n"tests/*" = ["NOPE"]\n',
            "per-file-ignores.'tests/*'",
            "unknown rule code 'NOPE'",
            id="per-file-code",
        ),
    ],
)
def test_bad_config_is_an_error_naming_file_key_and_what_is_allowed(project, capsys, body, key, allowed):
    path = configure(project, body)
    code, out, err = run(capsys, "--check", "src")
    assert code == 2
    assert out == ""
    assert f"{path}: [tool.tapefix] {key}: " in err
    assert allowed in err


def test_toml_syntax_error_names_the_file_and_place(project, capsys):
    path = project / "pyproject.toml"
    path.write_text('[tool.tapefix]\nselect = ["TF101"\nignore = []\n')
    code, _, err = run(capsys, "--check", "src")
    assert code == 2
    assert f"{path}: [tool.tapefix]: is not valid TOML" in err
    assert "line 3" in err


def test_missing_config_file_flag(project, capsys):
    code, _, err = run(capsys, "--check", "--config", "nowhere.toml", "src")
    assert code == 2
    assert "nowhere.toml" in err and "no such file" in err


def test_bad_code_on_the_command_line(project, capsys):
    code, _, err = run(capsys, "--check", "--select", "TF101,BOGUS", "src")
    assert code == 2
    assert "--select" in err and "unknown rule code 'BOGUS'" in err


# ----------------------------------------------------------------------------- the loader for the language server
def test_load_for_gives_the_settings_of_one_file(project):
    configure(
        project,
        'select = ["TF1"]\nignore = ["TF103"]\nunsafe-fixes = true\nexclude = ["build"]\n'
        '[tool.tapefix.per-file-ignores]\n"src/*" = ["TF101"]\n',
    )
    settings = load_for(str(project / "src" / "train.py"))
    assert settings.source == str(project / "pyproject.toml")
    assert settings.config == Config(select=("TF1",), ignore=("TF103",), unsafe_fixes=True)
    assert settings.config_for(str(project / "src" / "train.py")).ignore == ("TF103", "TF101")
    assert settings.config_for(str(project / "other.py")).ignore == ("TF103",)
    assert settings.excluded(str(project / "build" / "x.py"))
    assert not settings.excluded(str(project / "src" / "train.py"))


def test_load_for_without_configuration_gives_defaults(tmp_path):
    settings = load_for(str(tmp_path / "model.py"))
    assert settings.source is None
    assert settings.config == Config()
    assert settings.config_for(str(tmp_path / "model.py")) == Config()


def test_load_for_raises_for_a_bad_configuration(project):
    configure(project, "select = 3\n")
    with pytest.raises(ConfigError) as raised:
        load_for(str(project / "src" / "train.py"))
    assert raised.value.key == "select"
    assert raised.value.path == str(project / "pyproject.toml")
