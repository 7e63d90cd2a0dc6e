"""recloop: an agent-based simulator of recommendation feedback loops."""

__version__ = "0.1.0"
