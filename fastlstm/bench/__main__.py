"""`python -m fastlstm.bench [options]`: the same as `python -m fastlstm bench [options]`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
