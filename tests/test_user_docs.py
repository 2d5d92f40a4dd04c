"""User docs stay short, linked and true to the tree."""

import re

from tests.conftest import ROOT

DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_benchmarks_page_is_short_and_not_a_lab_notebook():
    text = (DOCS / "benchmarks.md").read_text()
    assert len(text.splitlines()) <= 220
    # commit hashes belong in notes at most, never on the user page
    hashes = [w for w in re.findall(r"\b[0-9a-f]{7,40}\b", text) if re.search(r"[a-f]", w)]
    assert not hashes, f"commit-like hashes in docs/benchmarks.md: {hashes}"


def test_every_note_is_dated_and_indexed():
    notes = DOCS / "notes"
    index = (notes / "README.md").read_text()
    for note in notes.glob("*.md"):
        if note.name == "README.md":
            continue
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-[a-z0-9-]+\.md", note.name), note.name
        assert f"({note.name})" in index, f"{note.name} is not listed in docs/notes/README.md"


def test_relative_links_in_docs_resolve():
    broken = []
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, f"broken links: {broken}"


def test_readme_layout_matches_the_tree():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```")[1]
    lines = block.strip("\n").splitlines()
    listed = {line.split()[0].rstrip("/") for line in lines if line and not line[0].isspace()}
    tree = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir()
        and not p.name.startswith((".", "_"))
        and p.name not in {"runs", "results"}
        and not p.name.endswith(".egg-info")
    }
    assert listed == tree, f"README layout lists {sorted(listed)}, the tree has {sorted(tree)}"
