"""`python -m prunebench`: the CLI without the console script on PATH (batch jobs, the workflow's rules)."""

import sys

from prunebench.cli import main

if __name__ == "__main__":
    sys.exit(main())
