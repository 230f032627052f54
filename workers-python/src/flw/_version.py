"""The SDK version, reported in the worker's ``hello`` message."""

__version__ = "0.1.0"
