"""pytest-benchmark suite of fastlstm against its peers (torch, onnxruntime): every case of
`python -m fastlstm bench` (each cell at each shape, and the variable-length LSTM cases).

Run from the repository root (pyproject's testpaths is tests/, so bench/ runs only when named):

    pytest bench/ --benchmark-only                      # the full grid
    pytest bench/ --benchmark-only --bench-quick        # smoke: the smallest shape only
    FASTLSTM_BENCH_QUICK=1 pytest bench/ --benchmark-only
    pytest bench/ --benchmark-only --bench-shapes 100x1x32x64,50x64x256x512 --bench-threads 1
    pytest bench/ --benchmark-only --bench-cells gru -k "inference"

Options (or environment variables): --bench-shapes (FASTLSTM_BENCH_SHAPES), --bench-cells
(FASTLSTM_BENCH_CELLS, default lstm,gru,rnn), --bench-lengths-shapes
(FASTLSTM_BENCH_LENGTHS_SHAPES; "none" for no variable-length case), --bench-quick
(FASTLSTM_BENCH_QUICK=1), --bench-threads (FASTLSTM_BENCH_THREADS, default 2),
--bench-min-time (FASTLSTM_BENCH_MIN_TIME, default 0.3 s: the rounds are chosen so that one
benchmark takes about this long, and at least 5).
"""
import os

import pytest

from fastlstm.bench import grid, peers, timing

_QUICK_SHAPE = min(grid.DEFAULT_SHAPES, key=lambda s: grid.flops(s, "inference"))


def _shape_list(text):
    if text.strip().lower() == "none":
        return []
    return [grid.parse_shape(s) for s in text.split(",") if s.strip()]


def pytest_addoption(parser):
    group = parser.getgroup("fastlstm bench")
    env = os.environ.get
    group.addoption("--bench-shapes", default=env("FASTLSTM_BENCH_SHAPES"),
                    help="comma-separated TxBxIxH shapes (default: the bench grid)")
    group.addoption("--bench-cells", default=env("FASTLSTM_BENCH_CELLS", ",".join(peers.CELLS)),
                    help="comma-separated cells (default: all of " + ",".join(peers.CELLS) + ")")
    group.addoption("--bench-lengths-shapes", default=env("FASTLSTM_BENCH_LENGTHS_SHAPES"),
                    help="comma-separated shapes of the variable-length LSTM cases, or 'none' "
                         "(default: " + ",".join(map(grid.shape_label,
                                                     grid.DEFAULT_LENGTHS_SHAPES)) + ")")
    group.addoption("--bench-quick", action="store_true",
                    default=env("FASTLSTM_BENCH_QUICK", "") not in ("", "0"),
                    help=f"only the LSTM at the smallest shape, {grid.shape_label(_QUICK_SHAPE)}")
    group.addoption("--bench-threads", type=int,
                    default=int(env("FASTLSTM_BENCH_THREADS", grid.DEFAULT_THREADS)),
                    help="threads for every contender (default 2)")
    group.addoption("--bench-min-time", type=float,
                    default=float(env("FASTLSTM_BENCH_MIN_TIME", timing.DEFAULT_MIN_TIME)),
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


def _cases(config):
    """The cases to run (fastlstm.bench.grid.Case), from the options."""
    if config.getoption("--bench-quick", default=False):
        return [grid.Case("lstm", _QUICK_SHAPE)]
    text = config.getoption("--bench-shapes", default=None)
    shapes = _shape_list(text) if text else list(grid.DEFAULT_SHAPES)
    cells = [c.strip() for c in config.getoption("--bench-cells").split(",") if c.strip()]
    for cell in cells:
        if cell not in peers.CELLS:
            raise pytest.UsageError(f"--bench-cells: unknown cell {cell!r}; choose from "
                                    + ", ".join(peers.CELLS))
    text = config.getoption("--bench-lengths-shapes", default=None)
    lengths_shapes = _shape_list(text) if text else list(grid.DEFAULT_LENGTHS_SHAPES)
    return grid.make_cases(shapes, cells, lengths_shapes)


def pytest_generate_tests(metafunc):
    """Parametrize `bench_case` over case x mode x contender (every contender we know; the test
    skips the ones not installed here and onnxruntime's training)."""
    if "bench_case" in metafunc.fixturenames:
        cases, ids = [], []
        for case in _cases(metafunc.config):
            for mode in peers.MODES:
                for name in peers.CONTENDERS:
                    cases.append((case, mode, name))
                    ids.append(f"{case.kind}-{grid.shape_label(case.shape)}-{mode}-{name}")
        metafunc.parametrize("bench_case", cases, ids=ids)


@pytest.fixture(scope="session")
def bench_settings(pytestconfig):
    """{"threads": int, "min_time": float} from the options above."""
    return {"threads": pytestconfig.getoption("--bench-threads"),
            "min_time": pytestconfig.getoption("--bench-min-time")}


@pytest.fixture(scope="session")
def bench_problems():
    """Session cache: Case -> (Problem, Reference); each built once."""
    cache = {}

    def get(case):
        if case not in cache:
            problem = case.problem()
            cache[case] = (problem, peers.reference(problem))
        return cache[case]

    return get
