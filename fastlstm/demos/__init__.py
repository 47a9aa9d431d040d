"""Demonstrations: `python -m fastlstm demo NAME [options]`, each also a function returning its
results.

    twostep   the classic worked example: two steps through one LSTM unit, the loss, every
              gradient (checked by finite differences) and one gradient-descent step
              (fastlstm.demos.twostep.run)
    adding    the adding problem: an LSTM learns to add two marked numbers out of 100, a plain
              RNN of the same size does not (fastlstm.demos.adding.run)
    digits    classify 8x8 handwritten digits read row by row (fastlstm.demos.digits.run)

Each prints what it does and how long it took; `python -m fastlstm demo NAME --help` lists its
options.
"""
import argparse
import importlib
import sys

#: name -> (module, one-line description)
DEMOS = {
    "twostep": ("fastlstm.demos.twostep",
                "the two-step LSTM worked example: gates, loss, gradients (finite-difference "
                "checked), one gradient-descent step"),
    "adding": ("fastlstm.demos.adding",
               "the adding problem at T=100: an LSTM solves it, a plain RNN does not"),
    "digits": ("fastlstm.demos.digits",
               "classify 8x8 handwritten digits (scikit-learn's) read row by row with an LSTM"),
}


def build_parser():
    """The argument parser of `python -m fastlstm demo`: one sub-command per demo."""
    parser = argparse.ArgumentParser(
        prog="python -m fastlstm demo",
        description="Run a demonstration of fastlstm.",
        epilog="'python -m fastlstm demo NAME --help' lists the options of one demo.")
    sub = parser.add_subparsers(dest="name", metavar="NAME", title="demos")
    sub.required = True
    for name, (module_name, help_text) in DEMOS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv=None):
    """Parse `NAME [options]` and run that demo; returns the exit status (0). An unknown name
    or a bad option exits with status 2 and a message (argparse's SystemExit)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    return args._module.main(args)


__all__ = ["main", "DEMOS"]
