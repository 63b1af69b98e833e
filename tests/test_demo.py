"""examples/demo.sh, the parts that run without a fleet: its shell functions, read from the script."""

from __future__ import annotations

import subprocess
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.sh"


def demo_function(name: str, call: str, stdin: str) -> str:
    """The output of ``call`` in a shell that has only the demo's function ``name`` defined."""
    lines = DEMO.read_text().splitlines()
    start = lines.index(f"{name}() {{")
    body = "\n".join(lines[start:lines.index("}", start) + 1])
    r = subprocess.run(["bash", "-c", f"set -euo pipefail\n{body}\n{call}"], input=stdin, capture_output=True,
                       text=True, timeout=30, check=True)
    return r.stdout


def test_the_tree_listing_says_how_many_files_it_leaves_out():
    """The GitOps tree's listing stops at 40 files and says how many more there are; it was cut at
    40 by head, without a word, and the demo's tree holds more."""
    files = [f"deploy/clusters/c/m-{i:02d}.yaml" for i in range(45)]
    out = demo_function("listed", "listed 40", "\n".join(files) + "\n").splitlines()
    assert out[:40] == [f"  {f}" for f in files[:40]]
    assert out[40:] == ["  ... and 5 more files"]
    # a tree of 40 or fewer is listed whole, with no count
    assert demo_function("listed", "listed 40", "\n".join(files[:40]) + "\n").splitlines() == \
        [f"  {f}" for f in files[:40]]


def test_a_step_title_is_plain_text_where_the_output_is_no_terminal():
    """`make demo > demo.log` (or a CI log) held each title as "\\033[1m== placer validate ...\\033[0m"."""
    out = demo_function("step", 'step "placer validate examples/hybrid"', "")
    assert out == "\n== placer validate examples/hybrid\n", repr(out)
