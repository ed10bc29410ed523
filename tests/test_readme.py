"""The README's examples run as written (a broken example is the first thing a new user meets)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block_after(heading: str) -> str:
    """The first ```python block after ``heading`` in the README."""
    text = README.read_text(encoding="utf-8")
    start = text.index(heading)
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match, f"no python example after {heading!r}"
    return match.group(1)


def test_the_your_own_method_example_runs_and_prints_what_it_says():
    code = python_block_after("### Your own method")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    assert out.getvalue().strip() == "[None, None]"


def test_the_triage_example_runs_and_prints_what_it_says():
    code = python_block_after("### Where is the model wrong? Triage in Python")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    assert out.getvalue().split("\n")[:3] == ["60", "5 [20, 20, 20]", "True"]
