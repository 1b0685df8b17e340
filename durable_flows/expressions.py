"""CEL expressions (trigger ``expression``, ``if_exp``, keys), compiled once and cached."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import cel

from .exceptions import ConfigurationError


class ExpressionError(ValueError):
    pass


@lru_cache(maxsize=1024)
def compile_expression(source: str) -> Any:
    """Compile a CEL expression; a syntax error raises ``ConfigurationError`` with the position."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigurationError(f"a CEL expression must be a non-empty string, got {source!r}")
    try:
        return cel.compile(source)
    except Exception as exc:  # the binding raises ValueError with CEL's own message
        raise ConfigurationError(f"invalid CEL expression {source!r}: {exc}") from None


def evaluate(source: str, variables: dict[str, Any]) -> Any:
    """Evaluate ``source``; a missing field or a type mismatch raises ``ExpressionError``."""
    program = compile_expression(source)
    try:
        return program.execute(variables)
    except Exception as exc:
        raise ExpressionError(f"{source!r}: {type(exc).__name__}: {exc}") from None


def is_true(source: str, variables: dict[str, Any]) -> bool:
    """A condition: anything but ``true`` (including an evaluation error) is false."""
    try:
        return evaluate(source, variables) is True
    except ExpressionError:
        return False
