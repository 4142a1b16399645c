"""Merge each benchmark's section (docs/benchmarks/*.md) into docs/benchmarks.md, in a stable order."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ROOT / "docs" / "benchmarks"
OUT = ROOT / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Each section is written by its script in `benchmarks/` (run `loopml bench NAME` or `make bench`), on the machine
named in the section. Ratios compare against the tool a user would otherwise pick, measured in the same run.
"""


def merge() -> Path:
    parts = [HEADER]
    for section in sorted(SECTIONS.glob("*.md")):
        parts.append(section.read_text().strip() + "\n")
    OUT.write_text("\n".join(parts))
    return OUT


if __name__ == "__main__":
    print(f"wrote {merge()}")
