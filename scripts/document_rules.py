"""Write docs/rules/*.md from the rules themselves. Run after changing a rule."""

from __future__ import annotations

import sys
from pathlib import Path

from tapefix.ruledocs import index, page_name, render
from tapefix.rules import ALL_RULES

DOCS = Path(__file__).resolve().parent.parent / "docs" / "rules"


def expected_pages() -> dict[str, str]:
    pages = {page_name(rule): render(rule) for rule in ALL_RULES}
    pages["README.md"] = index(ALL_RULES)
    return pages


def main() -> int:
    DOCS.mkdir(parents=True, exist_ok=True)
    pages = expected_pages()
    for stale in DOCS.glob("*.md"):
        if stale.name not in pages:
            stale.unlink()
    for name, text in pages.items():
        (DOCS / name).write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {len(pages)} pages to {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
