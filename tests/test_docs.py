"""Every "DESIGN x.y" / "DESIGN section N" a docstring or comment in src/ cites names a heading that exists in
docs/DESIGN.md, so a reader who follows a reference finds the contract (and renumbering the design notes
without updating the code fails here)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "DESIGN.md"
NUMBER = r"\d+(?:\.\d+)?"
# "DESIGN 5.1", "DESIGN section 4", "DESIGN sections 5.1, 5.4, 5.5 and 6", "DESIGN 5.5-5.9", "docs/DESIGN.md 7"
REFERENCE = re.compile(rf"DESIGN(?:\.md)?\s+(?:sections?\s+)?(?P<refs>{NUMBER}(?:\s*(?:-|–|,|and)\s*{NUMBER})*)")
HEADING = re.compile(rf"^#{{2,3}} (?P<number>{NUMBER})\.?\s", re.MULTILINE)


def headings(text: str) -> set[str]:
    """Section numbers of the ``##``/``###`` headings: ``## 5. MistNet`` -> ``5``, ``### 5.1 ...`` -> ``5.1``."""
    return {m["number"] for m in HEADING.finditer(text)}


def cited(refs: str) -> list[str]:
    """``"5.1, 5.5-5.7 and 6"`` -> ``["5.1", "5.5", "5.6", "5.7", "6"]`` (a range spans one section's parts)."""
    out: list[str] = []
    for part in re.split(r"\s*(?:,|and)\s*", refs.strip()):
        first, _, last = (p.strip() for p in re.sub(r"\s*[–-]\s*", "-", part).partition("-"))
        if last and "." in first and "." in last and first.split(".")[0] == last.split(".")[0]:
            major, lo, hi = first.split(".")[0], int(first.split(".")[1]), int(last.split(".")[1])
            out.extend(f"{major}.{minor}" for minor in range(lo, hi + 1))
        else:
            out.extend(p for p in (first, last) if p)
    return out


def references(root: Path) -> list[tuple[str, int, str]]:
    """(file, line, section) for every DESIGN reference in the Python files under ``root``; a reference may
    wrap onto the next line (``DESIGN\n    section 4``)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            following = lines[number].strip().lstrip("#").strip() if number < len(lines) else ""
            for match in REFERENCE.finditer(f"{line} {following}"):
                if match.start() < len(line):  # starts on this line (one starting on the next is found there)
                    found.extend((str(path.relative_to(REPO)), number, n) for n in cited(match["refs"]))
    return found


def test_every_design_reference_in_src_names_a_heading() -> None:
    sections = headings(DESIGN.read_text())
    refs = references(REPO / "src")
    assert len(refs) >= 40, f"the reference scanner found only {len(refs)} references: is it broken?"
    missing = [f"{file}:{line}: DESIGN {number}" for file, line, number in refs if number not in sections]
    assert not missing, "references to sections docs/DESIGN.md does not have:\n" + "\n".join(missing)


def test_the_scanner_reads_every_form_of_reference(tmp_path: Path) -> None:
    assert cited("5.1, 5.4, 5.5 and 6") == ["5.1", "5.4", "5.5", "6"]
    assert cited("5.5-5.7") == ["5.5", "5.6", "5.7"]
    assert cited("8") == ["8"]
    assert headings("## 5. MistNet\n### 5.1 The edge part\n#### 9.9 too deep\n## 11 Next\n") == {"5", "5.1", "11"}
    assert "12.3" not in headings(DESIGN.read_text())
    source = tmp_path / "src" / "m.py"
    source.parent.mkdir()
    source.write_text('"""Uses the env contract of DESIGN\n    section 4 and DESIGN 5.2-5.3."""\n# DESIGN 12.3\n')
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        refs = references(tmp_path / "src")
    finally:
        REPO = saved
    assert refs == [("src/m.py", 1, "4"), ("src/m.py", 2, "5.2"), ("src/m.py", 2, "5.3"), ("src/m.py", 3, "12.3")]


def _layout_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1]
    return section.split("```\n", 2)[1]


def test_readme_layout_draws_every_package_and_only_existing_ones() -> None:
    """README's layout section has one line per package folder of src/fedmist (issue 18): a new folder without a
    line, or a line for a folder that is gone, fails here."""
    drawn = {line.split()[0].rstrip("/") for line in _layout_block().splitlines()
             if line.startswith("src/fedmist/") and not line.split()[0].endswith("*.py")}
    root = REPO / "src" / "fedmist"
    packages = {str(module.parent.relative_to(REPO)) for module in root.rglob("*.py") if module.parent != root}
    assert drawn == packages, f"missing: {sorted(packages - drawn)}, gone: {sorted(drawn - packages)}"
