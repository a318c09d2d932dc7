"""The pre-commit hooks, run by the real pre-commit against a throwaway git repository.

pre-commit builds the hook's environment with pip from a snapshot of this checkout, so the test
needs PyPI (for libcst, click and the build backend) and nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUGGY = """\
import numpy as np
import tensorflow as tf

x = tf.Variable(3.7)
with tf.GradientTape() as tape:
    y = np.floor(x)
"""
pytestmark = pytest.mark.slow


def git(cwd: Path, *args: str, env: Dict[str, str]) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))}
    env.update(
        {
            "HOME": str(home),
            "PRE_COMMIT_HOME": str(home / "pre-commit-cache"),
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "test@example.invalid",
            "GIT_CONFIG_NOSYSTEM": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    return env


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory, environment: Dict[str, str]) -> tuple[Path, str]:
    """A snapshot of this checkout (what a user's pre-commit would clone), committed in a throwaway repo."""
    repo = tmp_path_factory.mktemp("hook-repo")
    for name in (".pre-commit-hooks.yaml", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, repo / name)
    shutil.copytree(ROOT / "tapefix", repo / "tapefix", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git(repo, "init", "-q", "-b", "main", env=environment)
    git(repo, "add", "-A", env=environment)
    git(repo, "commit", "-q", "-m", "snapshot", env=environment)
    return repo, git(repo, "rev-parse", "HEAD", env=environment).strip()


def consumer(tmp_path: Path, hook_repo: tuple[Path, str], hooks: str, env: Dict[str, str]) -> Path:
    repo_path, rev = hook_repo
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(BUGGY)
    (project / "clean.py").write_text("import tensorflow as tf\n")
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {repo_path}\n    rev: {rev}\n    hooks:\n{hooks}"
    )
    git(project, "init", "-q", "-b", "main", env=env)
    git(project, "add", "-A", env=env)
    return project


def pre_commit(project: Path, env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )


def test_check_hook_reports_and_fix_hook_fixes(tmp_path, hook_repo, environment):
    hooks = "      - id: tapefix-check\n      - id: tapefix\n        args: [--unsafe-fixes]\n"
    project = consumer(tmp_path, hook_repo, hooks, environment)

    checked = pre_commit(project, environment, "tapefix-check", "--all-files")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "tapefix (check)" in checked.stdout and "Failed" in checked.stdout
    assert "train.py:6:9: TF101" in checked.stdout
    assert (project / "train.py").read_text() == BUGGY

    fixed = pre_commit(project, environment, "tapefix", "--all-files")
    assert fixed.returncode == 1, fixed.stdout + fixed.stderr  # pre-commit fails a hook that changed files
    assert "files were modified by this hook" in fixed.stdout
    assert "tf.stop_gradient(tf.floor(x))" in (project / "train.py").read_text()

    git(project, "add", "-A", env=environment)
    again = pre_commit(project, environment, "--all-files")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("Passed") == 2
