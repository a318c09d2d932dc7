"""Which frames are the user's code, which a library's, which TensorFlow's own; and the place a frame is
at, down to the expression (Python 3.11 code positions). No TensorFlow here."""

from __future__ import annotations

import ast
import linecache
import os
import sysconfig
from types import CodeType, FrameType
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from tapefix.tracing.model import Place

USER, LIBRARY, INTERNAL = "user", "library", "internal"

#: packages whose frames are the machinery a tensor goes through, never the cause the user wants
_INTERNAL_PACKAGES = ("tensorflow", "keras", "tf_keras", "numpy", "absl", "google", "ml_dtypes", "tree", "optree")

_TAPEFIX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STDLIB = {os.path.realpath(p) for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}}


class Classifier:
    """Classifies frames by file name (cached): user code is under one of ``roots`` and not in an
    installed package; TensorFlow, Keras, NumPy, the standard library and tapefix are internal; the
    rest (installed packages, modules elsewhere on sys.path) is a library."""

    def __init__(self, roots: Iterable[str]) -> None:
        self.roots = tuple(os.path.join(os.path.realpath(r), "") for r in roots)
        self._cache: Dict[str, str] = {}

    def __call__(self, filename: str) -> str:
        kind = self._cache.get(filename)
        if kind is None:
            kind = self._cache[filename] = self._classify(filename)
        return kind

    def _classify(self, filename: str) -> str:
        if filename.startswith("<"):
            # a notebook cell, python -c or exec'd code is the user's; frozen importlib is not
            return INTERNAL if filename.startswith("<frozen") else USER
        if "__autograph_generated" in filename:
            return INTERNAL
        path = os.path.realpath(filename)
        if path.startswith(os.path.join(_TAPEFIX_DIR, "")):
            return INTERNAL
        parts = path.split(os.sep)
        for marker in ("site-packages", "dist-packages"):
            if marker in parts:
                index = len(parts) - 1 - parts[::-1].index(marker)
                package = parts[index + 1] if index + 1 < len(parts) else ""
                package = package[:-3] if package.endswith(".py") else package
                return INTERNAL if package in _INTERNAL_PACKAGES else LIBRARY
        if any(path.startswith(os.path.join(s, "")) for s in _STDLIB):
            return INTERNAL
        if any(path.startswith(root) for root in self.roots):
            return USER
        return LIBRARY


#: a frame reduced to what locates it, cheap to take while ops run
Site = Tuple[CodeType, int, int]  # (code, lasti, lineno)


def walk(frame: Optional[FrameType], classify: Classifier) -> Tuple[Optional[Site], Optional[Site]]:
    """(the innermost user frame, the innermost library frame inside it) from ``frame`` outward."""
    library: Optional[Site] = None
    while frame is not None:
        code = frame.f_code
        kind = classify(code.co_filename)
        if kind == USER:
            return (code, frame.f_lasti, frame.f_lineno or 0), library
        if kind == LIBRARY and library is None:
            library = (code, frame.f_lasti, frame.f_lineno or 0)
        frame = frame.f_back
    return None, library


def site_of(frame: FrameType) -> Site:
    return frame.f_code, frame.f_lasti, frame.f_lineno or 0


def place(site: Optional[Site], display: Optional[Callable[[str], str]] = None) -> Optional[Place]:
    """The place of a site: the expression being evaluated there when Python knows it."""
    if site is None:
        return None
    code, lasti, lineno = site
    line, column, text = lineno, 1, ""
    positions = getattr(code, "co_positions", None)
    if positions is not None and lasti >= 0:
        try:
            start, end, col, end_col = list(positions())[lasti // 2]
        except (IndexError, ValueError):
            start = end = col = end_col = None
        if start is not None and col is not None:
            line, column = start, col + 1
            text = _span(code.co_filename, start, end or start, col, end_col)
    if not text:
        text = linecache.getline(code.co_filename, line).strip()
    path = display(code.co_filename) if display else code.co_filename
    return Place(path, line, column, text, code.co_name)


def _span(filename: str, start: int, end: int, col: int, end_col: Optional[int]) -> str:
    lines = [linecache.getline(filename, n) for n in range(start, end + 1)]
    if not lines or not lines[0]:
        return ""
    # positions count UTF-8 bytes
    encoded = [ln.encode("utf-8") for ln in lines]
    if len(encoded) == 1:
        piece = encoded[0][col : end_col if end_col is not None else None]
    else:
        piece = encoded[0][col:] + b"".join(encoded[1:-1]) + encoded[-1][: end_col if end_col is not None else None]
    text = " ".join(piece.decode("utf-8", "replace").split())
    return text if len(text) <= 120 else text[:117] + "..."


def call_arguments(text: str) -> Tuple[Optional[str], Optional[str], List[str]]:
    """For ``tape.gradient(loss, [w, b])`` as written: ("loss", "[w, b]", ["w", "b"]); the last is empty
    unless the sources are a list or tuple written out."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None, None, []
    if not isinstance(node, ast.Call):
        return None, None, []
    args = {i: a for i, a in enumerate(node.args)}
    for keyword in node.keywords:
        if keyword.arg == "target":
            args[0] = keyword.value
        elif keyword.arg == "sources":
            args[1] = keyword.value
    target = ast.unparse(args[0]) if 0 in args else None
    sources = ast.unparse(args[1]) if 1 in args else None
    written = args.get(1)
    elements = [ast.unparse(e) for e in written.elts] if isinstance(written, (ast.List, ast.Tuple)) else []
    return target, sources, elements


def display_path(path: str) -> str:
    """A path as the user would write it: relative to the working directory when it is below it."""
    if path.startswith("<"):
        return path
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative
