"""The README stays a five-minute read, and every link in it and in docs/ leads somewhere (issue 26)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_is_short_and_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 13 * 1024
    block = text.split("```", 2)[1]
    assert "bash scripts/setup.sh && .venv/bin/adiposeseg demo" in block and ".venv/bin/python -m pytest" in block


def test_every_relative_link_resolves():
    missing = []
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for link in re.findall(r"\]\(([^)#\s]+)", page.read_text()):
            if not link.startswith(("http://", "https://")) and not (page.parent / link).exists():
                missing.append(f"{page.name}: {link}")
    assert missing == []
