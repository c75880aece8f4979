"""Configuration problems: one human line per problem, each naming the field.

:class:`ConfigError` carries the lines; :func:`validate_mapping` turns pydantic's errors
into them (``flows[2].key_id: ...``). Values typed where a secret belongs, and URLs with
credentials in them, are never echoed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .redact import redact_url, redact_urls


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        problems = [redact_urls(problem) for problem in problems]  # no URL's password, wherever it came from
        super().__init__("; ".join(problems))
        self.problems = problems


class HugeInt:
    """Stands for an integer too long for Python to convert (over 4300 digits) in a parsed document."""

    __slots__ = ("digits",)

    def __init__(self, digits: int):
        self.digits = digits

    def __repr__(self) -> str:
        return f"an integer of {self.digits} digits"

    __str__ = __repr__


# Fields whose value is never echoed, whatever was typed there.
SECRET_FIELDS = ("api_key", "api_secret", "api_secret_file")
MAX_ECHO = 80  # longer values are cut in messages


def _shown(value: Any, show: Callable[[Any], str] = repr) -> str:
    """``repr(value)`` (or ``str``), cut to a message's size; an int past Python's 4300-digit
    conversion limit cannot be printed at all and is described instead."""
    try:
        text = show(value)
    except ValueError:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = " ".join(text.split())
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        name = _shown(part, str)
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{name}]"
        elif part and not name.startswith(("function-", "constrained-")):
            out += f".{name}" if out else name
    return out or "(top level)"


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    secret_field = any(str(part) in SECRET_FIELDS or "secret" in str(part) for part in error["loc"])
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    value = error.get("input")
    if secret_field:  # never echo what was typed where a secret belongs
        if value is not None:  # (the messages of these fields do not quote it; in case one ever does)
            for form in {_shown(value), _shown(value, str)}:
                if len(form) >= 4:  # a shorter form would also hit words of the message
                    message = message.replace(form, "the value")
        return " ".join(message.split())
    if isinstance(value, HugeInt):
        return f"{message} (got {value})"
    if isinstance(value, str) and ":/" in value:  # a URL's password is never echoed, even one with a space
        hidden = redact_url(value)
        message = message.replace(repr(value), repr(hidden)).replace(value, hidden)
        value = hidden
    if kind not in ("model_type",) and isinstance(value, (str, int, float, bool)):
        shown = _shown(value)
        if shown not in message:
            message += f" (got {shown})"
    return " ".join(message.split())


M = TypeVar("M", bound=BaseModel)


def validate_mapping(
    model: type[M], raw: Any, what: str, *, hide_input: Callable[[tuple[Any, ...]], bool] = lambda loc: False
) -> M:
    """Validate a parsed YAML document against ``model``; ConfigError with a line per problem.

    ``hide_input(loc)`` says for which fields the value typed must never be echoed.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"(top level): the {what} must be a YAML mapping"])
    try:
        return model.model_validate(raw)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError([f"(top level): the {what} is nested too deeply"]) from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            ctx_error = (error.get("ctx") or {}).get("error")
            if isinstance(ctx_error, ConfigError):
                problems.extend(ctx_error.problems)
                continue
            if hide_input(error["loc"]):
                error = {**error, "input": None}
            problems.append(f"{_field_path(error['loc'])}: {_message(error)}")
        raise ConfigError(problems) from None
