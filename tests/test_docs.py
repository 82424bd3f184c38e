"""Every Python code block of README.md and docs/*.md runs as written (one case per block).

A block runs in a fresh interpreter, in an empty working directory that sees the repository's
``suites/`` and ``configs/`` (so ``mlflow.db`` and ``reports/`` land there, not in the
checkout). A block that must not run (it needs a GPU, a download, or is an excerpt of code that
already runs) is preceded by ``<!-- not-run: <reason> -->``; such blocks are few and say why.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>.*?)\s*-->\s*$")
MAX_NOT_RUN = 2


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    code: str
    not_run: str | None  # the reason, when marked not-run

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The ```python blocks of ``path`` (dedented when inside a list item), with their not-run marks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        mark = NOT_RUN.match(before)
        out.append(Block(path, i + 1, textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n",
                         mark["reason"] if mark else None))
        i = end + 1
    return out


BLOCKS = [b for p in DOCS for b in blocks_of(p)]


def test_the_blocks_are_found_and_few_are_not_run() -> None:
    assert len(BLOCKS) >= 3 and any(b.path.name == "README.md" for b in BLOCKS)
    skipped = [b for b in BLOCKS if b.not_run is not None]
    assert len(skipped) <= MAX_NOT_RUN, [b.id for b in skipped]
    assert all(b.not_run for b in skipped), "a not-run mark needs a reason: <!-- not-run: why -->"


def test_a_not_run_mark_needs_a_reason(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("text\n\n<!-- not-run: needs a GPU -->\n```python\nimport torch\n```\n\n"
                   "  ```python\n  x = 1\n  ```\n<!-- not-run: -->\n```python\npass\n```\n", encoding="utf-8")
    a, b, c = blocks_of(doc)
    assert (a.not_run, a.code) == ("needs a GPU", "import torch\n")
    assert (b.not_run, b.code) == (None, "x = 1\n")
    assert c.not_run == ""  # marked without a reason: the test above fails on it


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.not_run is None], ids=lambda b: b.id)
def test_block_runs(block: Block, tmp_path: Path) -> None:
    for name in ("suites", "configs"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    script = tmp_path / "block.py"
    script.write_text(block.code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
