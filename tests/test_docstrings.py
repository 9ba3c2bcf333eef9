"""Every ```python example in the public API's docstrings runs as it stands.

The public API is `cellgraph.__all__` and the `__all__` of `cellgraph.cells`,
`cellgraph.systems` and `cellgraph.feedback`: each class or function, and
the public methods and properties a class defines. Each example runs in a
fresh Keras session, in a namespace holding `np`, `keras` and `cellgraph`
(as a reader who did `import numpy as np, keras, cellgraph` would), in an
empty working folder. tests/test_docs.py does the same for docs/*.md.
"""

import inspect
import re

import keras
import numpy as np
import pytest

import cellgraph
from cellgraph import cells, feedback, systems

SUBPACKAGES = (cells, systems, feedback)

# Examples known to fail, by id: `{name: (exception, reason)}`. Strict xfails:
# one that is fixed must leave this table. Empty: every example runs.
BROKEN: dict = {}


def public_objects():
    """`(qualified name, object)` for every public class, function and method."""
    found = []
    for module in (cellgraph, *SUBPACKAGES):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not (inspect.isclass(obj) or callable(obj)):
                continue
            qualified = f"{module.__name__}.{name}"
            found.append((qualified, obj))
            if not inspect.isclass(obj):
                continue
            for attribute, value in vars(obj).items():
                if attribute.startswith("_") and attribute != "__init__":
                    continue
                if isinstance(value, property):
                    value = value.fget
                found.append(
                    (f"{qualified}.{attribute}", getattr(value, "__func__", value))
                )
    return found


def docstring_examples():
    for qualified, obj in public_objects():
        doc = getattr(obj, "__doc__", None)
        if not isinstance(doc, str):
            continue
        blocks = re.findall(
            r"```python\n(.*?)```", inspect.cleandoc(doc), flags=re.DOTALL
        )
        for number, code in enumerate(blocks, start=1):
            name = f"{qualified}-{number}" if len(blocks) > 1 else qualified
            marks = ()
            if name in BROKEN:
                error, reason = BROKEN[name]
                marks = pytest.mark.xfail(raises=error, reason=reason, strict=True)
            yield pytest.param(name, code, id=name, marks=marks)


EXAMPLES = list(docstring_examples())


@pytest.mark.parametrize("name,code", EXAMPLES)
def test_docstring_example_runs(name, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keras.backend.clear_session()  # layer names as in a fresh session
    namespace = {
        "__name__": "docstring",
        "np": np,
        "keras": keras,
        "cellgraph": cellgraph,
    }
    exec(compile(code, f"<docstring of {name}>", "exec"), namespace)


def test_public_api_has_docstring_examples():
    names = {name.rsplit("-", 1)[0] for name, _ in (p.values for p in EXAMPLES)}
    # the main classes of each package are among them
    for expected in (
        "cellgraph.RecurrentModel",
        "cellgraph.Superloop",
        "cellgraph.cells.LSTMCell",
        "cellgraph.systems.Stack",
        "cellgraph.feedback.FeedbackChain",
    ):
        assert expected in names
    assert len(EXAMPLES) >= 20
    assert set(BROKEN) <= {name for name, _ in (p.values for p in EXAMPLES)}
