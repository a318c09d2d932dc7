"""Positions stay true: the text libcst parses has the user's lines, character for character.

Every position tapefix reports, and every edit it makes, is counted in the user's source from the lines
and columns libcst gives. libcst places nodes by generating code, so those are true only when the code
it generates is the source. Two layouts break that: a line holding only a backslash (``\\``) before a
statement, which libcst drops with its newline, and a form feed in the indentation of a line of code.
After either, every later position of the block moved up a line or left a column, so a finding landed
on the wrong line and its edit was garbage.

``parseable(source)`` is the text libcst is given: the same length, the same line breaks, and the same
program as ``source`` (checked with CPython's own parser), with each backslash-only line before code
turned into a comment line (``\\`` becomes ``#``), which libcst keeps. A form feed in the indentation of
code has no such twin (CPython counts indentation from it), so such a source is refused with a clear
error instead of being analysed at wrong places.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING, List, Optional

from tapefix.types import SourceError

if TYPE_CHECKING:
    import libcst as cst  # imported on the first parse: a cached run and the outputs never need it

#: a line break as Python counts them (a form feed is not one, whatever ``str.splitlines`` says)
LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: a line holding only blanks and a backslash continuation
_LONE_BACKSLASH = re.compile(r"(?:^|(?<=[\r\n]))[ \t\f]*(\\)(?=\r\n|\r|\n)")
#: a form feed in the leading blanks of a line that holds code
_FORM_FEED_BEFORE_CODE = re.compile(r"(?:^|(?<=[\r\n]))[ \t]*\f[ \t\f]*(?=[^ \t\f\r\n#\\])")

LAYOUT_REFUSED = "tapefix cannot keep positions exact here: {what}; not analysed"


def parseable(source: str) -> str:
    """``source`` as libcst must be given it for true positions (usually ``source`` itself)."""
    if "\\" not in source and "\f" not in source:
        return source
    feed = _FORM_FEED_BEFORE_CODE.search(source)
    if feed is not None:
        line = 1 + len(LINE_BREAK.findall(source, 0, feed.start()))
        raise SourceError(LAYOUT_REFUSED.format(what="a form feed in the indentation of code"), line, 0)
    spans = [match.start(1) for match in _LONE_BACKSLASH.finditer(source)]
    if not spans:
        return source
    view = list(source)
    for index in spans:
        view[index] = "#"
    text = "".join(view)
    # A backslash that joins code to code (or sits in a string) stays: libcst may keep it as it is.
    return text if _same_program(source, text) else source


def plain_layout(source: str) -> bool:
    """Whether ``source`` has none of the layouts ``parseable`` works around (a backslash-only line); a
    form feed in the indentation of code raises ``SourceError`` as ``parseable`` does."""
    if "\\" not in source and "\f" not in source:
        return True
    parseable(source)
    return _LONE_BACKSLASH.search(source) is None


def line_starts(text: str) -> List[int]:
    """The offset where each line of ``text`` starts, lines broken as Python breaks them (CR-only and
    CRLF files included): the one table every output turns offsets into lines and columns with."""
    return [0, *(match.end() for match in LINE_BREAK.finditer(text))]


def parse_exactly(source: str) -> cst.Module:
    """``cst.parse_module`` of ``parseable(source)``; raises ``SourceError`` when the layout cannot be
    kept, ``cst.ParserSyntaxError`` as libcst does."""
    import libcst as cst

    view = parseable(source)
    module = cst.parse_module(view)
    if view is not source or _LONE_BACKSLASH.search(source):
        if not _round_trips(module, view):
            raise SourceError(LAYOUT_REFUSED.format(what="a line continuation libcst does not keep"))
    return module


def _round_trips(module: cst.Module, text: str) -> bool:
    code = module.code
    # libcst drops the last newline of a file whose lines end in a lone CR; nothing after it moves.
    return code == text or (text.endswith("\r") and code == text[:-1])


def _same_program(source: str, view: str) -> bool:
    before: Optional[str]
    try:
        before = ast.dump(ast.parse(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        before = None
    try:
        after = ast.dump(ast.parse(view))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return before == after
