"""The runnable examples under examples/ run and reach their own checks (each asserts its
result against its peer)."""
import pathlib
import runpy

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def test_run_torch_model(capsys):
    pytest.importorskip("torch")
    runpy.run_path(str(EXAMPLES / "run_torch_model.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "largest difference from torch" in out


def test_stream(capsys):
    runpy.run_path(str(EXAMPLES / "stream.py"), run_name="__main__")
    assert "largest difference from the whole-sequence call" in capsys.readouterr().out
