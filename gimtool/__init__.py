"""gimtool: Genetic InfoMax for imaging genetics."""

__version__ = "0.1.0"
