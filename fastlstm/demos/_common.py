"""Small helpers shared by the demonstrations: printing, timing and thread limits."""
import argparse
import contextlib
import sys
import time

import fastlstm


def printer(out):
    """A print function that writes to `out` (default sys.stdout) and flushes each line."""
    out = sys.stdout if out is None else out

    def say(*parts, **kwargs):
        print(*parts, file=out, flush=True, **kwargs)

    return say


@contextlib.contextmanager
def limited_threads(n):
    """fastlstm.threads(n) inside the block, or no limit at all when n is None."""
    if n is None:
        yield
    else:
        with fastlstm.threads(n):
            yield


class Stopwatch:
    """Seconds since it was made: `watch.seconds`."""

    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self):
        return time.perf_counter() - self.start


def int_at_least(low):
    """An argparse type: an integer >= low, else a usage error (exit status 2)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = int_at_least(1)


def add_threads_argument(parser, default=1):
    parser.add_argument("--threads", type=int_at_least(0), default=default, metavar="N",
                        help=f"threads for fastlstm's kernels (default {default}: at these small "
                             "sizes barely slower than two on an idle 2-core machine, and many "
                             "times faster when another program keeps a core busy, since "
                             "threads meet at every step; 0 = fastlstm's own choice)")


def threads_option(value):
    """--threads 0 means fastlstm's own choice (None)."""
    return None if not value else value
