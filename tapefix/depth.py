"""The guard in front of libcst's native parser: deep input never reaches it.

libcst parses in native code, and on a very deep expression (a sum of 10,000 terms, 5,000 nested
lambdas) it overflows the C stack and the whole process dies with a segmentation fault; a Python
``except`` cannot catch that. CPython's own parser rejects such input with a ``RecursionError`` or
``MemoryError`` (and at about 3,000 levels in 3.11), and libcst has been measured to parse every shape
of expression up to that depth, in the main thread and in a worker thread. So a source goes to libcst
only when ``ast.parse`` accepts it and no node in its tree is nested deeper than ``MAX_DEPTH``: the
second check keeps the guard when a program has raised the recursion limit (CPython then accepts
deeper trees).
"""

from __future__ import annotations

import ast
from typing import List, Tuple

from tapefix.types import SourceError

#: the deepest tree handed to libcst (measured safe to 2,900 on every expression shape)
MAX_DEPTH = 2000
#: a source shorter than this cannot nest deeper than MAX_DEPTH: each level takes at least a character
_SHORT = MAX_DEPTH

TOO_DEEP = "does not parse: nesting too deep"


def check_depth(source: str) -> None:
    """Raise ``SourceError`` when ``source`` is nested too deeply for libcst to parse safely.

    Invalid Python is left to libcst, which says where the error is; only CPython's own refusals on
    depth (``RecursionError``, ``MemoryError``, "too many nested parentheses") are raised here."""
    if len(source) < _SHORT:
        return
    try:
        tree = ast.parse(source)
    except (RecursionError, MemoryError):
        raise SourceError(TOO_DEEP) from None
    except SyntaxError as error:
        if "too many nested" in str(error.msg) or "too complex" in str(error.msg):
            raise SourceError(TOO_DEEP, error.lineno, error.offset) from None
        return
    except ValueError:
        return
    if depth_exceeds(tree, MAX_DEPTH):
        raise SourceError(TOO_DEEP)


def depth_exceeds(tree: ast.AST, limit: int) -> bool:
    """Whether some node of ``tree`` lies more than ``limit`` levels down. Iterative, and cheap: a
    one-line node narrower than the depth left cannot hold a deeper subtree (every level of an
    expression takes at least one character, and a node without a position, such as a comprehension,
    adds at most one level between two that have one), so it is not entered."""
    stack: List[Tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        lineno = getattr(node, "lineno", None)
        end_lineno = getattr(node, "end_lineno", None)
        if lineno is not None and lineno == end_lineno:
            width = (getattr(node, "end_col_offset", 0) or 0) - (getattr(node, "col_offset", 0) or 0)
            if depth + 2 * width < limit:
                continue
        for child in ast.iter_child_nodes(node):
            stack.append((child, depth + 1))
    return False
