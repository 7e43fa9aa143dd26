"""Every code block in README.md and docs/ runs, or is marked as a fragment.

A fenced block whose info string holds the word ``fragment`` (```` ```python fragment ````,
```` ```sh fragment ````) is an excerpt and is only shown. Every other block must be a
complete Python program (```` ```python ````): it runs here, in a fresh process, from an
empty folder, on the embedded nats-server it starts itself, and must exit 0. A block
marked ```` ```text output ```` right after it shows what the program prints: each of its
lines must appear in the program's output, in that order.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


class Block:
    """One fenced code block of a page."""

    def __init__(self, page: Path, line: int, info: str, code: str) -> None:
        self.page = page
        self.line = line
        self.words = info.split()
        self.code = code
        self.output: Block | None = None  # the ```text output block that follows, if any

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def fragment(self) -> bool:
        return "fragment" in self.words

    @property
    def is_output(self) -> bool:
        return "output" in self.words


def _blocks() -> list[Block]:
    found: list[Block] = []
    for page in PAGES:
        text = page.read_text()
        previous: Block | None = None
        previous_end = 0
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            block = Block(page, line, match.group(1), match.group(2))
            between = text[previous_end : match.start()] if previous is not None else ""
            if block.is_output and previous is not None and not between.strip():
                previous.output = block
            found.append(block)
            previous, previous_end = block, match.end()
    return found


BLOCKS = _blocks()
PROGRAMS = [b for b in BLOCKS if not b.fragment and not b.is_output]


def test_every_block_runs_or_is_marked() -> None:
    assert PROGRAMS, "no runnable code block found: the docs lost their examples?"
    unmarked = [b.name for b in PROGRAMS if b.words[:1] != ["python"]]
    assert unmarked == [], (
        "these blocks are neither Python programs nor marked `fragment`: " + ", ".join(unmarked)
    )
    orphans = [b.name for b in BLOCKS if b.is_output and not any(p.output is b for p in BLOCKS)]
    assert orphans == [], "`output` blocks must follow a runnable Python block: " + ", ".join(
        orphans
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "block", [b for b in PROGRAMS if b.words[:1] == ["python"]], ids=lambda b: b.name
)
def test_code_block_runs(block: Block, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "SDK_", "OTEL_"))}
    env.pop("ENABLE_NATS", None)
    env.pop("ENABLE_OTEL", None)
    env.pop("CODEC_TYPE", None)
    run = subprocess.run(
        [sys.executable, "-c", block.code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=100,
    )
    assert run.returncode == 0, f"{block.name} failed:\n{run.stderr[-3000:]}"
    if block.output is not None:
        position = 0
        for expected in filter(None, (line.strip() for line in block.output.code.splitlines())):
            found = run.stdout.find(expected, position)
            assert found >= 0, f"{block.name}: {expected!r} not in the output:\n{run.stdout}"
            position = found + len(expected)


def test_pages_link_to_each_other() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in readme, f"README.md does not link to docs/{page.name}"
