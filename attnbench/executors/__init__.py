"""Where comparison groups run: in this process, or each in a fresh subprocess."""

from attnbench.executors.base import Executor, GroupOutcome, make_executor

__all__ = ["Executor", "GroupOutcome", "make_executor"]
