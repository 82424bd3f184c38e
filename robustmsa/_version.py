"""The package version (a leaf: :mod:`robustmsa.plan` stamps it on every trial, the CLI prints it)."""
__version__ = "0.1.0"
