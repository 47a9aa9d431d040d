"""Facts about the machine and the run, for the headers of the bench's tables: the CPU, its
x86-64 level and the kernels' level, versions, the git commit, the float32 matrix-product rate
of this machine, and how busy other processes kept the CPUs while we ran."""
import os
import platform
import subprocess
import sys
import time
from typing import Dict, Optional, Sequence

import numpy as np

import fastlstm

from .timing import DEFAULT_MIN_TIME, DEFAULT_REPEATS, measure

DEFAULT_PEAK_SIZE = 2048


def matmul_rate(size: int = DEFAULT_PEAK_SIZE, min_time: float = DEFAULT_MIN_TIME,
                repeats: int = DEFAULT_REPEATS) -> Dict[str, float]:
    """This machine's float32 matrix-product rate: median time of a (size, size) @ (size, size)
    numpy matmul, under the caller's thread limits. Returns {size, median_s, gflops}."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    timing = measure(lambda: np.matmul(a, b, out=out), min_time, repeats)
    return {"size": size, "median_s": timing.median,
            "gflops": 2.0 * size ** 3 / timing.median / 1e9}


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def isa_info() -> Dict[str, object]:
    """{cpu_isa: the highest x86-64 level this CPU runs, cython_isa: the level of the Cython
    kernels in use (fastlstm._isa; $FASTLSTM_ISA forces it)}; None where not built."""
    from .. import _isa

    try:
        return {"cpu_isa": _isa.cpu_levels()[-1] if _isa.cpu_levels() else "none",
                "cython_isa": _isa.chosen_level()}
    except ImportError:
        return {"cpu_isa": None, "cython_isa": None}


def isa_label() -> str:
    """isa_info() as text: "CPU x86-64-v4, cython kernels x86-64-v3"."""
    info = isa_info()
    return f"CPU {info['cpu_isa'] or 'level unknown'}, cython kernels " \
           f"{info['cython_isa'] or 'not built'}"


def machine_info() -> Dict[str, object]:
    """{cpu, logical_cpus, usable_cpus, platform, cpu_isa, cython_isa}."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "platform": platform.platform(), **isa_info()}


def versions(contenders: Sequence[str]) -> Dict[str, str]:
    """Versions of python, fastlstm, numpy and of the peers among `contenders` (imported)."""
    out = {"python": platform.python_version(), "fastlstm": fastlstm.__version__,
           "numpy": np.__version__}
    for name in ("torch", "onnxruntime", "onnx"):
        peer = "onnxruntime" if name == "onnx" else name
        if peer in contenders and name in sys.modules:
            out[name] = getattr(sys.modules[name], "__version__", "?")
    return out


def git_commit() -> Optional[str]:
    """`git describe --always --dirty` of the checkout holding fastlstm, or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        res = subprocess.run(["git", "-C", here, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() or None


class OtherLoad:
    """CPU time used by other processes while we run: (busy CPU time of the whole machine
    from /proc/stat) - (this process's CPU time), per second of wall time. None off Linux."""

    def __init__(self):
        self._start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal ...
        busy = sum(fields[:8]) - fields[3] - (fields[4] if len(fields) > 4 else 0)
        mine = os.times()
        return (busy / os.sysconf("SC_CLK_TCK"), mine.user + mine.system, time.monotonic())

    def cpus(self) -> Optional[float]:
        """Average number of CPUs kept busy by other processes since construction."""
        end = self._sample()
        if self._start is None or end is None or end[2] - self._start[2] <= 0:
            return None
        other = (end[0] - self._start[0]) - (end[1] - self._start[1])
        return round(max(0.0, other) / (end[2] - self._start[2]), 2)


def load_average() -> Optional[float]:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_line() -> str:
    """One line naming the CPU and the levels, for the tables without a header of their own:
    "machine: AMD EPYC 7B13, 2 logical CPUs; CPU x86-64-v3, cython kernels x86-64-v3"."""
    return f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs; {isa_label()}"
