"""Generated blocks in docs pages: everything between `<!-- generated: NAME -->` and
`<!-- end: NAME -->` is rewritten from benchmarks/results by the block's builder; `--check` exits 1
when the committed page differs from what the results give (the suite runs it)."""

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


def main(argv: list[str], doc: Path, sections: dict[str, Callable[[], str]], command: str) -> int:
    current = doc.read_text()
    wanted = render(current, sections)
    if argv == ["--check"]:
        if wanted != current:
            print(f"error: {doc.relative_to(ROOT)} differs from benchmarks/results: run `{command}`", file=sys.stderr)
            return 1
        return 0
    doc.write_text(wanted)
    return 0
