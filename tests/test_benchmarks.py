"""The benchmarks run end to end (`run.py --quick`) and report sane rows."""

import importlib.util
import json
import math
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def load_run():
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def finite_positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_run_reports_finite_positive_medians_and_ratios(tmp_path, capsys):
    out = tmp_path / "results.json"
    results = load_run().main(["--quick", "--json", str(out)])

    rows = results["rows"]
    assert {r["section"] for r in rows} == {"lstm", "superloop", "build", "memory"}
    for r in rows:
        if r["skipped"]:  # only PyTorch may be missing
            assert r["contender"] == "torch nn.LSTM", r
            continue
        assert r["error"] is None, r
        assert finite_positive(r["median"]), r
        assert finite_positive(r["ratio"]), r
        assert r["anchor"], r
        assert all(finite_positive(v) for v in r["other_ratios"].values()), r

    lstm = {(r["contender"], r["metric"]) for r in rows if r["section"] == "lstm"}
    for contender in (  # --quick leaves out the other Keras contenders
        "cellgraph LSTMCell",
        "keras.layers.LSTM",
        "cellgraph LSTMCell [XLA]",
        "torch nn.LSTM",
    ):
        assert (contender, "train step") in lstm
        assert (contender, "inference") in lstm
    anchors = [r for r in rows if r["contender"] == "keras.layers.LSTM"]
    assert all(r["ratio"] == 1.0 for r in anchors if r["section"] == "lstm")

    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(rows))
    table = capsys.readouterr().out
    assert "| cellgraph LSTMCell | train step |" in table
    assert "### memory" in table
