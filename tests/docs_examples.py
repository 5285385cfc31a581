"""Reading the documentation's Python examples, for the tests that run them.

A page's ```python blocks are its examples, in order; a block preceded by
``<!-- not-tested: reason -->`` is left out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1] / "docs"
_BLOCK = re.compile(r"(<!-- not-tested[^>]*-->\s*)?```python\n(.*?)```", re.S)


def python_blocks(page: Path) -> list[str]:
    """The page's tested Python blocks, in order."""
    return [code for skip, code in _BLOCK.findall(page.read_text(encoding="utf-8")) if not skip]


def run_blocks(page: Path, namespace: dict[str, Any]) -> None:
    """Run the page's blocks in order in ``namespace``, as one script would."""
    for number, code in enumerate(python_blocks(page), 1):
        exec(compile(code, f"{page.name} example {number}", "exec"), namespace)
