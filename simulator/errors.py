"""One small error hierarchy: every error recloop raises on bad input is a ``RecloopError``."""

from __future__ import annotations


class RecloopError(Exception):
    """Base class of every error recloop raises on purpose."""


class ConfigError(RecloopError, ValueError):
    """An experiment config (or a ``--set`` override) is invalid; the message names the key."""


class ValidationError(RecloopError, ValueError):
    """A public function got an argument outside its documented domain (shape, range, dtype)."""


class LogSchemaError(RecloopError, ValueError):
    """An impression log lacks a required column or holds a value outside the schema."""


class ResultsError(RecloopError):
    """A results folder is missing, unfinished, or belongs to a different config."""
