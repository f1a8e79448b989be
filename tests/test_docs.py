"""The reader's pages speak the user's language, and their commands are ones the CLI accepts."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "config").glob("*.yaml")),
         *sorted((REPO / "workflow" / "report").glob("*.rst"))]
# Words from how the project is developed, which a user has no way to look up
PROCESS_WORDS = re.compile(r"\bissues? ?#?\d+|working session|\bthe task\b|development CPU|today's recipes|"
                           r"the time bound|knife-edge|this session", re.IGNORECASE)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_development_process_words(page):
    hits = [m.group(0) for m in PROCESS_WORDS.finditer(page.read_text())]
    assert not hits, f"{page.relative_to(REPO)}: {hits}"


def test_no_development_process_words_in_cli_messages():
    sources = [*sorted((REPO / "prunebench").glob("*.py")), *sorted((REPO / "methods").glob("*.py"))]
    hits = {p.name: PROCESS_WORDS.findall(p.read_text()) for p in sources}
    assert not {k: v for k, v in hits.items() if v}


def test_readme_prunebench_commands_name_verbs_and_flags_the_cli_accepts():
    from prunebench.cli import build_parser

    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    for line in re.findall(r"prunebench ([a-z][^`\n]*)", (REPO / "README.md").read_text()):
        words = line.split()
        if words[0] not in verbs:
            continue
        accepted = {o for a in verbs[words[0]]._actions for o in a.option_strings}  # noqa: SLF001
        flags = [w.split("=")[0] for w in words[1:] if w.startswith("--")]
        assert set(flags) <= accepted, f"README: `prunebench {line}` uses {set(flags) - accepted}"


def test_the_smallest_plugin_in_the_docs_passes_the_conformance_check():
    from prunebench.testing import check_method

    page = (REPO / "docs" / "adding-a-method.md").read_text()
    code = page.split("## The smallest plugin", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(code, "docs/adding-a-method.md", "exec"), namespace)  # noqa: S102 - the page's own example
    check_method(namespace["KeepFirst"](), hp={"finetune": {"batch_size": 64}})
