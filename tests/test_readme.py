"""The README's Python examples run as written. Each ```python block that starts with an
import begins a new script; a block that does not continues the script before it (as the
README reads). Each script runs in a fresh namespace and an empty working directory. A script
that imports an optional framework (torch, keras, onnx, onnxruntime, h5py) is skipped when that
framework is not installed; CI installs them all, so there every script runs."""
import importlib.util
import os
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
OPTIONAL = ("torch", "keras", "onnx", "onnxruntime", "h5py")


def _scripts():
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert blocks, "README.md has no python blocks"
    scripts = []
    for block in blocks:
        first = next(line for line in block.splitlines()
                     if line.strip() and not line.startswith("#"))
        if first.startswith(("import ", "from ")) or not scripts:
            scripts.append(block)
        else:
            scripts[-1] += block
    return scripts


def _label(script):
    return next(line for line in script.splitlines() if line.strip() and
                not line.startswith(("import", "from", "#")))[:50]


SCRIPTS = _scripts()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch.onnx.export(dynamo=False)
@pytest.mark.parametrize("script", SCRIPTS, ids=[f"{i}:{_label(s)}"
                                                 for i, s in enumerate(SCRIPTS)])
def test_readme_script_runs(script, tmp_path, monkeypatch):
    for name in OPTIONAL:
        if re.search(rf"^\s*(import|from) {name}\b", script, flags=re.M) \
                and importlib.util.find_spec(name) is None:
            pytest.skip(f"needs {name}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))
    exec(compile(script, "README.md", "exec"), {"__name__": "__readme__"})
