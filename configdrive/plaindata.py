"""Python data from library callers -> plain data, under the limits parsed YAML is held to: ``plain_data``."""

from __future__ import annotations

import datetime
from collections import UserString
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from configdrive.errors import Problem, SpecError
from configdrive.limits import LIMITS, MAX_INT
from configdrive.specschema import cut, field_path, quote
from configdrive.yamldoc import encodable


@dataclass(eq=False)
class _Walk:
    """A Mapping or Sequence being copied into plain data."""

    source: Any
    data: Any
    items: Iterator[Any]
    path: tuple[Any, ...]
    size: int = 1
    height: int = 1
    pending: Any = None  # where the child being copied goes


_END = object()
_SKIP = object()  # a mapping item left out: its problem is already recorded


def plain_data(data: Any, source: str | None = None) -> Any:
    """``data`` as plain dicts, lists, str, int, float, bool, None and dates, checked as parsed YAML
    is: depth, values (shared lists and mappings counted at every use), circular data, non-string
    and duplicate keys, strings UTF-8 cannot carry, values YAML/JSON have no type for. Any Mapping,
    Sequence or str subclass (MappingProxyType, tuple, UserString, ...) is taken as its plain kind.
    Raises SpecError naming the path of every problem."""
    problems: list[Problem] = []
    done: dict[int, tuple[Any, int, int]] = {}
    open_ids: set[int] = set()
    seen: list[Any] = []  # keeps every source alive, so no id() is reused while walking
    stack: list[_Walk] = []
    values = 0
    max_depth, max_values = LIMITS["depth"], LIMITS["values"]

    def stop(path: tuple[Any, ...], message: str) -> SpecError:
        return SpecError([*problems, Problem(field_path(path), message)], source)

    def visit(value: Any, path: tuple[Any, ...]) -> tuple[Any, int, int] | None:
        """The plain value, its size and height; None when a frame was pushed for it."""
        nonlocal values
        kind = _container_kind(value)
        if kind is None:
            values += 1
            if values > max_values:
                raise stop(path, f"more than {max_values} values (shared lists and mappings counted at every use)")
            return _plain_scalar(value, path, problems), 1, 0
        ident = id(value)
        if ident in open_ids:
            raise stop(path, "is a list or mapping that contains itself (circular data)")
        size, height = done[ident][1:] if ident in done else (1, 1)
        if len(stack) + height > max_depth:
            raise stop(path, f"nested deeper than {max_depth} levels of lists and mappings")
        values += size
        if values > max_values:
            raise stop(path, f"more than {max_values} values (shared lists and mappings counted at every use)")
        if ident in done:
            return done[ident]
        try:
            items = iter(value.items() if kind is dict else value)
        except Exception as err:  # a caller's own Mapping or Sequence type
            problems.append(Problem(field_path(path), f"cannot be read: {type(err).__name__}"))
            return None, 1, 0
        seen.append(value)
        open_ids.add(ident)
        stack.append(_Walk(value, kind(), items, path))
        return None

    result = visit(data, ())
    if result is not None:
        if problems:
            raise SpecError(problems, source)
        return result[0]
    while True:
        walk = stack[-1]
        item: Any
        try:
            item = next(walk.items, _END)
        except Exception as err:
            problems.append(Problem(field_path(walk.path), f"cannot be read: {type(err).__name__}"))
            item = _END
        if item is _END:
            stack.pop()
            open_ids.discard(id(walk.source))
            done[id(walk.source)] = (walk.data, walk.size, walk.height)
            if not stack:
                break
            parent = stack[-1]
            _store(parent, parent.pending, walk.data, walk.size, walk.height)
            continue
        if isinstance(walk.data, dict):
            key = _plain_key(item, walk, problems)
            if key is _SKIP:
                continue
            path, value = (*walk.path, key), item[1]
        else:
            key, path, value = len(walk.data), (*walk.path, len(walk.data)), item
        result = visit(value, path)
        if result is None:
            walk.pending = key
        else:
            _store(walk, key, *result)
    if problems:
        raise SpecError(problems, source)
    return walk.data


def _store(walk: _Walk, key: Any, value: Any, size: int, height: int) -> None:
    walk.size += size
    walk.height = max(walk.height, height + 1)
    if isinstance(walk.data, dict):
        walk.data[key] = value
    else:
        walk.data.append(value)


def _container_kind(value: Any) -> type | None:
    if isinstance(value, (str, bytes, bytearray, memoryview, UserString)):
        return None
    if isinstance(value, Mapping):
        return dict
    if isinstance(value, Sequence):
        return list
    return None


def _plain_key(item: Any, walk: _Walk, problems: list[Problem]) -> Any:
    try:
        key, _ = item
    except (TypeError, ValueError):
        problems.append(Problem(field_path(walk.path), "cannot be read: its items are not (key, value) pairs"))
        return _SKIP
    if isinstance(key, UserString):
        key = key.data
    if not isinstance(key, str):
        problems.append(Problem(field_path(walk.path), f"mapping key {quote(key)} is not a string"))
        return _SKIP
    key = str.__str__(key)
    if not key.isascii() and not encodable(key):
        problems.append(
            Problem(
                field_path(walk.path),
                f"mapping key {quote(key)} holds a lone surrogate (\\ud800-\\udfff), which no UTF-8 file can carry",
            )
        )
        return _SKIP
    if key in walk.data:
        problems.append(Problem(field_path((*walk.path, key)), "is given twice (duplicate key)"))
        return _SKIP
    return key


def _plain_scalar(value: Any, path: tuple[Any, ...], problems: list[Problem]) -> Any:
    if value is None or value is True or value is False:
        return value
    if isinstance(value, UserString):
        value = value.data
    if isinstance(value, str):
        text = str.__str__(value)
        if not text.isascii() and not encodable(text):
            problems.append(
                Problem(field_path(path), "holds a lone surrogate (\\ud800-\\udfff), which no UTF-8 file can carry")
            )
        return text
    if isinstance(value, int):
        number = int.__int__(value)
        if not -MAX_INT < number < MAX_INT:
            problems.append(Problem(field_path(path), f"an integer of more than {LIMITS['number_chars']} digits"))
        return number
    if isinstance(value, float):
        return float.__float__(value)
    if type(value) in (datetime.date, datetime.datetime):
        return value  # what YAML's plain dates give
    kind = "bytes (not text)" if isinstance(value, (bytes, bytearray, memoryview)) else type(value).__name__
    problems.append(Problem(field_path(path), f"a {cut(kind)} is not a YAML/JSON value"))
    return None
