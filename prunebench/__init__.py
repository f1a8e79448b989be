"""prunebench: budget-aware dynamic pruning benchmarks."""

__version__ = "0.1.0"
