"""Generated blocks of a docs/ page: everything between `<!-- generated: NAME -->` and
`<!-- end: NAME -->` is rewritten from benchmarks/results; `--check` exits 1 when the committed page
differs from what the JSON gives (the report modules' tests run it)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def render(text: str, sections: dict[str, Callable[[], str]]) -> str:
    for name, build in sections.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n).*?(\n<!-- end: {name} -->)", re.S)
        text = pattern.sub(lambda m, b=build: m.group(1) + b() + m.group(2), text)
    return text


def main(doc: Path, sections: dict[str, Callable[[], str]], module: str, argv: list[str]) -> int:
    current = doc.read_text()
    wanted = render(current, sections)
    if argv == ["--check"]:
        if wanted != current:
            print(f"error: {doc.relative_to(ROOT)} differs from benchmarks/results: run `python -m {module}`",
                  file=sys.stderr)
            return 1
        return 0
    doc.write_text(wanted)
    return 0
