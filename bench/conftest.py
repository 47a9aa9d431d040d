"""pytest-benchmark suite of fastlstm against its peers (torch, onnxruntime).

Run from the repository root (pyproject's testpaths is tests/, so bench/ runs only when named):

    pytest bench/ --benchmark-only                      # the full grid
    pytest bench/ --benchmark-only --lstm-quick         # smoke: the smallest shape only
    FASTLSTM_BENCH_QUICK=1 pytest bench/ --benchmark-only
    pytest bench/ --benchmark-only --lstm-shapes 100x1x32x64,50x64x256x512 --lstm-threads 1
    pytest bench/ --benchmark-only -k "100x1x32x64 and inference"

Options (or environment variables): --lstm-shapes (FASTLSTM_BENCH_SHAPES), --lstm-quick
(FASTLSTM_BENCH_QUICK=1), --lstm-threads (FASTLSTM_BENCH_THREADS, default 2),
--lstm-min-time (FASTLSTM_BENCH_MIN_TIME, default 0.3 s: the rounds are chosen so that one
benchmark takes about this long, and at least 5).
"""
import os

import pytest

from fastlstm import _bench, _peers

_QUICK_SHAPE = min(_bench.DEFAULT_SHAPES, key=lambda s: _bench.lstm_flops(s, "inference"))


def pytest_addoption(parser):
    group = parser.getgroup("fastlstm bench")
    group.addoption("--lstm-shapes", default=os.environ.get("FASTLSTM_BENCH_SHAPES"),
                    help="comma-separated TxBxIxH shapes (default: the bench grid)")
    group.addoption("--lstm-quick", action="store_true",
                    default=os.environ.get("FASTLSTM_BENCH_QUICK", "") not in ("", "0"),
                    help=f"only the smallest shape, {_bench.shape_label(_QUICK_SHAPE)}")
    group.addoption("--lstm-threads", type=int,
                    default=int(os.environ.get("FASTLSTM_BENCH_THREADS", _bench.DEFAULT_THREADS)),
                    help="threads for every contender (default 2)")
    group.addoption("--lstm-min-time", type=float,
                    default=float(os.environ.get("FASTLSTM_BENCH_MIN_TIME",
                                                 _bench.DEFAULT_MIN_TIME)),
                    help="target seconds of timed rounds per benchmark (default 0.3)")


def pytest_configure(config):
    # pyproject turns every warning into an error; the peers' own import-time and
    # first-use warnings (deprecations inside torch / onnx / onnxruntime) are not fastlstm's.
    for line in (
        "ignore::DeprecationWarning:torch.*",
        "ignore::DeprecationWarning:onnx.*",
        "ignore::DeprecationWarning:onnxruntime.*",
        "ignore::FutureWarning:torch.*",
        "ignore:.*NumPy.*:UserWarning:torch.*",
    ):
        config.addinivalue_line("filterwarnings", line)


def _shapes(config):
    text = config.getoption("--lstm-shapes", default=None)
    if config.getoption("--lstm-quick", default=False):
        return [_QUICK_SHAPE]
    if text:
        return [_bench.parse_shape(s) for s in text.split(",") if s.strip()]
    return list(_bench.DEFAULT_SHAPES)


def pytest_generate_tests(metafunc):
    """Parametrize `lstm_case` over shape x mode x contender (every contender we know; the
    test skips the ones not installed here and onnxruntime's training)."""
    if "lstm_case" in metafunc.fixturenames:
        cases, ids = [], []
        for shape in _shapes(metafunc.config):
            for mode in _peers.MODES:
                for name in _peers.CONTENDERS:
                    cases.append((shape, mode, name))
                    ids.append(f"{_bench.shape_label(shape)}-{mode}-{name}")
        metafunc.parametrize("lstm_case", cases, ids=ids)


@pytest.fixture(scope="session")
def lstm_settings(pytestconfig):
    """{"threads": int, "min_time": float} from the options above."""
    return {"threads": pytestconfig.getoption("--lstm-threads", default=_bench.DEFAULT_THREADS),
            "min_time": pytestconfig.getoption("--lstm-min-time",
                                               default=_bench.DEFAULT_MIN_TIME)}


@pytest.fixture(scope="session")
def lstm_problems():
    """Session cache: shape (T, B, I, H) -> (Problem, Reference); each built once."""
    cache = {}

    def get(shape):
        if shape not in cache:
            problem = _peers.make_problem(*shape)
            cache[shape] = (problem, _peers.reference(problem))
        return cache[shape]

    return get
