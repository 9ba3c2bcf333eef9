"""The main job, `python -m cellgraph.demo`, is the attention superloop demo."""

import runpy
import sys
import warnings

import pytest

from cellgraph import demo, demo_attention


def test_main_job_is_the_attention_superloop():
    assert demo.main is demo_attention.main


def test_main_job_runs_as_a_module(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m cellgraph.demo", "--help"])
    with pytest.raises(SystemExit) as exit_info, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # already imported
        runpy.run_module("cellgraph.demo", run_name="__main__")
    assert exit_info.value.code == 0
    assert "python -m cellgraph.demo" in capsys.readouterr().out
