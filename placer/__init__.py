"""placer: a hybrid placement engine for GPU workloads."""

__version__ = "0.1.0"
