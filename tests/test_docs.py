"""Every Python code block in docs/*.md runs as it stands, so the docs cannot rot."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def code_blocks():
    for page in sorted(DOCS.glob("*.md")):
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
        for number, code in enumerate(blocks, start=1):
            yield pytest.param(page.name, code, id=f"{page.stem}-{number}")


@pytest.mark.parametrize("page,code", list(code_blocks()))
def test_docs_code_block_runs(page, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"docs/{page}", "exec"), {"__name__": f"docs_{page}"})


def test_docs_have_code_blocks():
    assert len(list(code_blocks())) >= 10
