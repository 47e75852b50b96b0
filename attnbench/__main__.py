from attnbench.cli import entry

entry()
