"""A second, independent client: headless Neovim's built-in LSP client applies tapefix's quick fix.

Neovim opens a buggy module, attaches ``tapefix-lsp``, waits for the diagnostic, runs
``vim.lsp.buf.code_action`` filtered to one action, writes the buffer, and waits for the diagnostic to
go away. The test then reads the file from disk. Set ``TAPEFIX_NVIM`` to try another Neovim binary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Tuple

import pytest

pytestmark = pytest.mark.slow

NVIM = os.environ.get("TAPEFIX_NVIM") or shutil.which("nvim")

BUGGY = """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    label = "🧪 quantised"; y = np.floor(x)
"""
FIXED = """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    label = "🧪 quantised"; y = tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))
"""
IGNORED = BUGGY.replace("y = np.floor(x)\n", "y = np.floor(x)  # tapefix: ignore[TF101]\n")

# Neovim >= 0.8 picks the action with `filter` and `apply = true`; 0.7 (Debian 12) has neither, so
# there the script answers the selection prompt (vim.ui.select) with the same choice.
SCRIPT = r"""
local title = vim.env.TAPEFIX_ACTION
local function fail(message)
  io.stderr:write("neovim: " .. message .. "\n")
  vim.cmd("cquit 3")
end
local bufnr = vim.api.nvim_get_current_buf()
local client_id = vim.lsp.start_client({
  name = "tapefix",
  cmd = { vim.env.TAPEFIX_PYTHON, "-m", "tapefix.lsp" },
  root_dir = vim.fn.getcwd(),
})
if not client_id then fail("the language server did not start") end
vim.lsp.buf_attach_client(bufnr, client_id)

if not vim.wait(30000, function() return #vim.diagnostic.get(bufnr) > 0 end, 50) then
  fail("no diagnostics arrived")
end
local diagnostic = vim.diagnostic.get(bufnr)[1]
if diagnostic.code ~= "TF101" then fail("unexpected diagnostic " .. vim.inspect(diagnostic)) end
vim.api.nvim_win_set_cursor(0, { diagnostic.lnum + 1, diagnostic.col })
local before = vim.api.nvim_buf_get_changedtick(bufnr)

local function chosen(action) return action.title:find(title, 1, true) ~= nil end
if vim.fn.has("nvim-0.8") == 1 then
  vim.lsp.buf.code_action({ context = { only = { "quickfix" } }, filter = chosen, apply = true })
else
  vim.ui.select = function(items, _, on_choice)
    for index, item in ipairs(items) do
      if chosen(item[2]) then return on_choice(item, index) end
    end
    on_choice(nil)
  end
  vim.lsp.buf.code_action({ only = { "quickfix" } })
end
if not vim.wait(30000, function() return vim.api.nvim_buf_get_changedtick(bufnr) ~= before end, 50) then
  fail("the code action was not applied")
end
vim.cmd("write")
if not vim.wait(30000, function() return #vim.diagnostic.get(bufnr) == 0 end, 50) then
  fail("the diagnostic is still there after the fix: " .. vim.inspect(vim.diagnostic.get(bufnr)))
end
vim.cmd("qall!")
"""


def nvim_version(binary: str) -> Optional[Tuple[int, int]]:
    first = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()
    match = re.match(r"NVIM v(\d+)\.(\d+)", first[0] if first else "")
    return (int(match.group(1)), int(match.group(2))) if match else None


@pytest.fixture(scope="module")
def nvim() -> str:
    if NVIM is None:
        pytest.skip("nvim is not installed (apt-get install neovim); .ci/run installs it")
    version = nvim_version(NVIM)
    assert version is not None and version >= (0, 7), f"{NVIM} is not Neovim 0.7 or newer"
    return NVIM


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        pytest.param("(unsafe fix)", FIXED, id="quick-fix"),
        pytest.param("Ignore TF101 on this line", IGNORED, id="ignore-comment"),
    ],
)
def test_neovim_applies_the_action_and_writes_the_file(nvim: str, tmp_path: Path, action: str, expected: str) -> None:
    module = tmp_path / "train.py"
    module.write_text(BUGGY, encoding="utf-8")
    script = tmp_path / "apply.lua"
    script.write_text(SCRIPT, encoding="utf-8")
    env = dict(os.environ)
    for variable in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[variable] = str(tmp_path / "xdg" / variable.lower())
    env.update(TAPEFIX_ACTION=action, TAPEFIX_PYTHON=sys.executable)
    completed = subprocess.run(
        [nvim, "--headless", "--clean", "-n", "-u", "NONE", "-c", f"luafile {script}", str(module)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stderr + completed.stdout
    assert module.read_text(encoding="utf-8") == expected
