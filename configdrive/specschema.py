"""The VM spec's JSON Schema and its jsonschema validator, with short messages: ``schema_problems``,
``field_path`` and ``quote`` (how every problem names its field and quotes a value)."""

from __future__ import annotations

import json
import re
import reprlib
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from configdrive.errors import Problem

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator


def schema_text() -> str:
    """The VM spec's JSON Schema, as shipped inside the package."""
    # A plain read: importlib.resources pulls in zipfile and threading, ~10 ms of a cold build.
    path = Path(__file__).parent / "schemas" / "vmspec.schema.json"
    try:
        return path.read_text()
    except OSError:  # imported from a zip archive
        from importlib import resources

        return resources.files("configdrive").joinpath("schemas/vmspec.schema.json").read_text()


@lru_cache(maxsize=1)
def _validator() -> Validator:
    """The one jsonschema validator of this process, built on first use (importing jsonschema
    costs ~50 ms, which ``configdrive schema``, ``get`` and ``list`` never pay).

    Two exact readings where jsonschema is lax: ``integer`` means an int (jsonschema also takes
    1500.0), and a ``pattern``'s ``$`` means the end of the text as in ECMA-262 (Python's ``$``
    also matches before a final newline, so ``"h\\n"`` passed ``^[a-z]+$``)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError
    from jsonschema.validators import extend

    schema = json.loads(schema_text())
    keywords = _short_message_keywords(ValidationError, Draft202012Validator.VALIDATORS["const"])
    types = Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer)
    cls = cast("type[Validator]", cast(Callable[..., Any], extend)(Draft202012Validator, keywords, type_checker=types))
    if _uses_keyword(schema, "format"):
        return cls(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return cls(schema)


def _is_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _uses_keyword(schema: Any, keyword: str) -> bool:
    if isinstance(schema, dict):
        return keyword in schema or any(_uses_keyword(v, keyword) for v in schema.values())
    return isinstance(schema, list) and any(_uses_keyword(v, keyword) for v in schema)


@lru_cache(maxsize=256)
def schema_regex(pattern: str) -> re.Pattern[str]:
    """A JSON Schema (ECMA-262) ``pattern`` as a Python regex for ``search``: each ``$`` outside a
    character class becomes ``\\Z``, the very end of the text, which is what ECMA-262's ``$`` is."""
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index : index + 2])
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = r"\Z"
        out.append(char)
        index += 1
    return re.compile("".join(out))


#: Longest quote of a value in a message: values can be megabytes, or YAML alias bombs.
QUOTE_CHARS = 60

_REPR = reprlib.Repr()  # bounded however large or deep the value (and safe on cycles)
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, QUOTE_CHARS, QUOTE_CHARS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def quote(value: Any) -> str:
    """``repr(value)`` for a message, cut to about ``QUOTE_CHARS`` characters."""
    try:
        return cut(_REPR.repr(value))
    except Exception:  # a repr that raises, e.g. an int too long to print
        return f"<{type(value).__name__}>"


def cut(text: str) -> str:
    """``text`` for a message: longer than ``QUOTE_CHARS`` + 3, cut to ``QUOTE_CHARS`` and "..."."""
    return text if len(text) <= QUOTE_CHARS + 3 else text[:QUOTE_CHARS] + "..."


#: A jsonschema keyword function: (validator, keyword value, instance, schema) -> errors.
Keyword = Callable[[Any, Any, Any, Any], Iterator["ValidationError"]]


def _short_message_keywords(error: type[ValidationError], const: Keyword) -> dict[str, Keyword]:
    """jsonschema's keywords whose message quotes the instance, same checks and wording, quoting it
    through ``quote``: jsonschema builds ``f"{instance!r} ..."`` eagerly, so a 7-level alias bomb
    (~300 bytes of YAML) took 4 s and 52 MB per message before any could be shortened."""

    def sized(kind: str, too_long: bool, edge: int, at_edge: str, otherwise: str) -> Keyword:
        def check(validator: Any, limit: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
            if validator.is_type(instance, kind) and (len(instance) > limit if too_long else len(instance) < limit):
                yield error(f"{quote(instance)} {at_edge if limit == edge else otherwise}")

        return check

    def type_(validator: Any, types: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        types = [types] if isinstance(types, str) else types
        if not any(validator.is_type(instance, each) for each in types):
            yield error(f"{quote(instance)} is not of type {', '.join(map(repr, types))}")

    def pattern(validator: Any, regex: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if validator.is_type(instance, "string") and not schema_regex(regex).search(instance):
            yield error(f"{quote(instance)} does not match {regex!r}")

    def enum(validator: Any, enums: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        # jsonschema's own equality (a bool is not 1), through const, whose message quotes no instance
        if all(next(iter(const(validator, each, instance, schema)), None) for each in enums):
            yield error(f"{quote(instance)} is not one of {enums!r}")

    def minimum(validator: Any, low: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if validator.is_type(instance, "number") and instance < low:
            yield error(f"{quote(instance)} is less than the minimum of {low!r}")

    def maximum(validator: Any, high: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if validator.is_type(instance, "number") and instance > high:
            yield error(f"{quote(instance)} is greater than the maximum of {high!r}")

    def any_of(validator: Any, branches: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        context: list[ValidationError] = []
        for index, branch in enumerate(branches):
            errors = list(validator.descend(instance, branch, schema_path=index))
            if not errors:
                return
            context += errors
        yield error(f"{quote(instance)} is not valid under any of the given schemas", context=context)

    def not_(validator: Any, negated: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if validator.evolve(schema=negated).is_valid(instance):
            yield error(f"{quote(instance)} should not be valid under {negated!r}")

    return {
        "type": type_,
        "pattern": pattern,
        "enum": enum,
        "minimum": minimum,
        "maximum": maximum,
        "anyOf": any_of,
        "not": not_,
        "minLength": sized("string", False, 1, "should be non-empty", "is too short"),
        "maxLength": sized("string", True, 0, "is expected to be empty", "is too long"),
        "minItems": sized("array", False, 1, "should be non-empty", "is too short"),
        "maxItems": sized("array", True, 0, "is expected to be empty", "is too long"),
        "maxProperties": sized("object", True, 0, "is expected to be empty", "has too many properties"),
    }


def field_path(parts: Iterable[Any]) -> str:
    """``['network', 'ethernets', 'eth1', 'addresses', 0]`` -> ``network.ethernets.eth1.addresses[0]``.

    A key longer than ``QUOTE_CHARS`` is cut like a quoted value (keys are user text too)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        out += f".{cut(str(part))}" if out else cut(str(part))
    return out


def schema_problems(data: Any) -> list[Problem]:
    """Schema violations, each at the path of the field it concerns (jsonschema, Draft 2020-12)."""
    return schema_check(data)[0]


def schema_check(data: Any) -> tuple[list[Problem], bool]:
    """Schema problems, and whether the check ran to its end (semantic checks need that)."""
    validator = _validator()
    from jsonschema.exceptions import best_match  # already imported by _validator()

    problems: list[Problem] = []
    try:
        for error in validator.iter_errors(data):
            if error.context:
                # anyOf: the branch the user most likely meant, by best_match's own descent into
                # the context (deepest error; the anyOf error itself when branches tie). Given
                # error.context directly it would pick the shallowest: for a list of parts with one
                # bad field, "[...] is not of type 'string'".
                error = best_match([error])
            problems += _problems_of(error)
    except Exception as err:  # input jsonschema cannot handle, e.g. a complex number
        problems.append(Problem("", f"cannot be checked against the schema: {type(err).__name__}: {cut(str(err))}"))
        return problems, False
    return list(dict.fromkeys(problems)), True  # required: each error names every missing field


def _problems_of(error: ValidationError) -> list[Problem]:
    """One jsonschema error in our words: missing and unknown fields at their own paths."""
    parts = list(error.absolute_path)
    value: Any = error.validator_value
    instance: Any = error.instance
    if error.validator == "required":
        return [Problem(field_path([*parts, name]), "is required") for name in value if name not in instance]
    if error.validator == "additionalProperties" and value is False:
        # jsonschema names the extra keys only inside its message; find them as it does
        schema: Any = error.schema
        known, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
        return [
            Problem(field_path([*parts, extra]), "unknown field")
            for extra in instance
            if extra not in known
            and not (isinstance(extra, str) and any(schema_regex(p).search(extra) for p in patterns))
        ]
    if error.validator == "not" and not parts:
        return [Problem("user_data_parts", "give either user_data or user_data_parts, not both")]
    return [Problem(field_path(parts), error.message)]
