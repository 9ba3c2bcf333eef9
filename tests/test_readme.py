"""README.md stays true: its example runs and its commands are the real ones."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(language):
    text = README.read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_readme_example_runs_and_prints_the_shape_it_claims(capsys):
    (example,) = _blocks("python")
    exec(compile(example, str(README), "exec"), {"__name__": "readme_example"})
    assert capsys.readouterr().out.strip() == "(4, 10)"


def test_quick_start_gives_the_install_demo_and_test_commands():
    commands = [
        line.strip() for block in _blocks("bash") for line in block.splitlines()
    ]
    assert commands[:4] == [
        "pip install -e .",
        "python -m cellgraph.demo",
        'pip install -e ".[test]"',
        "pytest",
    ]
