"""Where comparison groups run: in this process, each in a fresh subprocess, in N local workers pinned to
GPUs or CPU cores, or as SLURM tasks through submitit."""

from attnbench.executors.base import (
    EXECUTORS, Executor, ExecutorChoice, GroupOutcome, GroupPool, make_executor, where_ran,
)

__all__ = ["EXECUTORS", "Executor", "ExecutorChoice", "GroupOutcome", "GroupPool", "make_executor", "where_ran"]
