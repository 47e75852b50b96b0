"""attnbench: what channel and spatial attention modules really cost in CNN backbones."""

__version__ = "0.1.0"
