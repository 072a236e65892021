"""The documentation cannot drift (issue 31): docs/cli.md is what the commands say, every relative link of README.md
and docs/ leads to a file (and a heading) that exists, and README keeps its short shape: a quick start on its first
screen, the two set-up commands, and a link to every page of docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deepfer.docs_cli import COMMAND, render

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md")), REPO / "classifier" / "weights" / "MODEL_CARD.md"]


def test_the_cli_reference_is_generated_from_the_commands():
    """docs/cli.md equals what the command tree gives now; after changing a command, regenerate it."""
    written = (DOCS / "cli.md").read_text()
    assert written == render(), f"docs/cli.md is out of date with the commands: run `{COMMAND}` and commit it"


def test_the_cli_reference_has_every_command_and_option():
    """Each command and sub-command has its section, and each of its options a row (the generator walks the tree)."""
    import typer.main

    from deepfer.cli import app

    text = render()
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="deepfer")
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        assert f"\n## deepfer {name}\n" in text, name
        section = text.split(f"\n## deepfer {name}\n", 1)[1].split("\n## ", 1)[0]
        sub_ctx = command.context_class(command, info_name=name, parent=ctx)
        for param in command.get_params(sub_ctx):
            if param.name != "help" and not param.hidden:
                assert f"`{param.get_help_record(sub_ctx)[0]}`".replace("|", "\\|") in section, (name, param.name)
    run = text.split("\n## deepfer run\n", 1)[1].split("\n## ", 1)[0]
    assert "`-o, --output <path>`" in run and "\x1b" not in text  # no ANSI, whatever the terminal


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces as '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link's text only
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    fence = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"#{1,6} (.+)", line)):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    """The targets of a page's Markdown links, outside code blocks and code spans."""
    targets = []
    fence = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
            continue
        if not fence:
            prose = re.sub(r"`[^`]*`", "", line)
            targets += re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose)
    return targets


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.name})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_somewhere(page):
    assert not broken_links(page), f"{page.relative_to(REPO)}: " + "; ".join(broken_links(page))


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## `deepfer run` (files)\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](other.md#deepfer-run-files) [up](#page) [web](https://example.com/x)\n"
                    "[gone](missing.md) [no anchor](other.md#nowhere) `[in code](missing.md)`\n"
                    "```\n[in a block](missing.md)\n```\n")
    assert broken_links(page) == ["missing.md (no such file)", "other.md#nowhere (no heading #nowhere in other.md)"]


def test_readme_starts_with_the_quick_start_and_links_every_page():
    readme = (REPO / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move reference material to docs/"
    first_screen = "\n".join(lines[:60])
    for step in ("make run", "deepfer predict", "justin.jpg: 1 face", "deepfer run --source", "--output annotated.mp4",
                 "deepfer serve"):
        assert step in first_screen, f"the quick start's first screen lacks {step!r}"
    for command in ("make run", "make test"):  # the two set-up commands; .ci/run runs the second
        assert f"```bash\n{command}" in readme or f"\n{command} " in readme, command
    assert "make test" in (REPO / ".ci" / "run").read_text()
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links(REPO / "README.md") if t.startswith("docs/")}
    orphans = sorted(p.name for p in DOCS.glob("*.md") if p.resolve() not in linked)
    assert not orphans, f"docs pages README does not link: {orphans}"


def test_the_quick_starts_predict_output_is_what_predict_prints_now(media: Path) -> None:
    """README shows `deepfer predict justin.jpg`'s real output: its face row must match the default model's answer
    (regenerate the block after changing the default weights)."""
    import json

    from typer.testing import CliRunner

    from deepfer.cli import app

    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("│    1 │"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    res = CliRunner().invoke(app, ["predict", str(media / "justin.jpg"), "--json"])
    assert res.exit_code == 0, res.output
    (face,) = json.loads(res.stdout)[0]["faces"]
    box = face["box"]
    assert cells[1] == ",".join(str(round(box[k])) for k in ("x1", "y1", "x2", "y2"))
    assert cells[2] == f"{face['emotion']} {face['confidence']:.0%}"
    assert [float(c) for c in cells[3:]] == pytest.approx(list(face["probabilities"].values()), abs=0.0015)


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


def test_the_python_api_page_shows_the_example_readme_runs():
    """docs/python-api.md repeats README's example (tests/deepfer/test_api.py runs README's): they must be the same."""
    assert python_blocks(REPO / "README.md")[0] == python_blocks(DOCS / "python-api.md")[0]
