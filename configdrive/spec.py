"""Spec text, file or mapping -> validated VMSpec: bounded parse, JSON Schema, semantic checks, every
problem collected.

Bounded: YAML is composed from parser events (libyaml's when present) by ``_Composer``, which never
recurses, so no nesting depth can crash either loader; it refuses, with the path where it happened,
nesting deeper than ``LIMITS["depth"]``, more than ``LIMITS["values"]`` values with aliases
expanded (an alias bomb stops after that many, in milliseconds), circular aliases, duplicate and
non-string mapping keys, tags outside YAML's core types and numbers Python cannot print. Data given
as Python objects (``spec_from_data``) goes through the same limits in ``plain_data``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import json
import os
import re
import reprlib
import uuid as uuidlib
from collections import UserString
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from configdrive.errors import InputError, Problem, SpecError
from configdrive.model import File, Interface, Nameservers, Network, Part, Route, SSHKey, VMSpec

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

#: Documented limits; each exceeded one is reported with the field that hit it. Item counts
#: (keys, NICs, addresses, parts, ...) are ``maxItems``/``maxProperties`` in the JSON Schema.
LIMITS = {
    "spec_bytes": 64 * 1024 * 1024,  # a spec file or etcd value
    "payload_bytes": 16 * 1024 * 1024,  # user_data / vendor_data, as rendered
    "file_bytes": 16 * 1024 * 1024,  # one entry of `files`
    "files_total_bytes": 64 * 1024 * 1024,  # all of `files`
    "depth": 64,  # lists and mappings inside each other, the spec's own mapping included
    "values": 20_000,  # scalars, lists and mappings (keys included), every alias expanded
    "network_entries": 256,  # addresses, routes and DNS servers, each over all interfaces
    "number_chars": 4300,  # digits of a number: Python prints no int longer than that
}

#: Namespace for uuids derived from instance ids (uuid5), so a spec without `uuid` is still stable.
UUID_NAMESPACE = uuidlib.UUID("5f6c2a4e-8d1b-4e5a-9a53-6b8e0c1d2f30")

SSH_KEY_TYPES = frozenset({
    "ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})

# Every pattern is used with fullmatch: `$` would also match before a final newline.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
_UUID = re.compile(r"(?:urn:uuid:)?[0-9a-fA-F]{8}(?:-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}")
_IP_TEXT = re.compile(r"[0-9A-Fa-f:./]{2,64}")  # what an address or network can be spelled with
#: Characters that end or break a line somewhere (C0, DEL, C1, U+2028/9): never in a value that
#: reaches a line-oriented file (authorized_keys, headers, paths, names).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SECTIONS = (("ethernets", "ethernet"), ("bonds", "bond"), ("vlans", "vlan"))


def load_spec(source: str | os.PathLike[str] | Mapping[str, Any]) -> VMSpec:
    """Read a spec from a YAML/JSON file path or take a mapping; return it validated or raise SpecError."""
    if isinstance(source, Mapping):
        return spec_from_data(source)
    from configdrive.inputs import read_regular_file

    try:
        raw = read_regular_file(source, LIMITS["spec_bytes"])
    except InputError as err:
        reason = str(err).removeprefix(f"{err.path}: ")
        raise SpecError([Problem("", f"cannot read spec: {reason}")], err.path) from err
    return parse_spec(raw, os.fspath(source))


def parse_spec(raw: bytes | str, source: str | None = None) -> VMSpec:
    """Parse YAML or JSON spec text and validate it."""
    return _spec_from_plain(parse_document(raw, source), source)


def parse_document(raw: bytes | str, source: str | None = None, *, max_values: int | None = None) -> Any:
    """Parse spec text (YAML, a superset of JSON) into plain data, bounded (see the module
    docstring); syntax errors and refused YAML become SpecError. ``max_values`` replaces
    ``LIMITS["values"]`` for documents that are not specs (a leases table, a QMP map)."""
    import yaml

    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError as err:
            raise SpecError([Problem("", f"spec text cannot be encoded as UTF-8 ({err.reason} at "
                                         f"character {err.start})")], source) from None
    if len(raw) > LIMITS["spec_bytes"]:
        raise SpecError([Problem("", f"spec is larger than {LIMITS['spec_bytes']} bytes")], source)
    composer = _Composer(LIMITS["values"] if max_values is None else max_values)
    loader = _yaml_loader()(raw)
    try:
        data = composer.compose(loader)
    except _Stop as stop:
        raise SpecError([*composer.problems, stop.problem], source) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(err, "problem", None) or str(err)
        raise SpecError([Problem("", f"not valid YAML/JSON{where}: {_cut(reason)}")], source) from err
    finally:
        loader.dispose()
    if composer.problems:
        raise SpecError(composer.problems, source)
    return data


def _yaml_loader() -> Any:
    """libyaml's parser when PyYAML has it (about 20x faster), else PyYAML's own; only its events
    are used, so both give the same data and neither can recurse."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def spec_from_data(data: Any, source: str | None = None) -> VMSpec:
    """Validate data given as Python objects (schema, then meaning) and build the VMSpec; raise
    SpecError with every problem. Any Mapping, Sequence or str subclass is taken as its plain kind."""
    return _spec_from_plain(plain_data(data, source), source)


def _spec_from_plain(data: Any, source: str | None) -> VMSpec:
    problems = _plain_problems(data)
    if problems:
        raise SpecError(problems, source)
    return _build(data)


def check_data(data: Any) -> list[Problem]:
    """Every problem with a spec given as Python data; empty when it is valid."""
    try:
        plain = plain_data(data)
    except SpecError as err:
        return err.problems
    return _plain_problems(plain)


def _plain_problems(data: Any) -> list[Problem]:
    problems, checked = _schema_check(data)
    if checked and isinstance(data, Mapping):
        # Semantic checks run on every top-level field the schema found no fault in, so one
        # pass reports everything that is wrong without tripping over wrongly typed values.
        broken = {p.path.split(".")[0].split("[")[0] for p in problems}
        problems += semantic_problems({k: v for k, v in data.items() if k not in broken})
    return sorted(set(problems))


# --- bounded YAML -----------------------------------------------------------------------------

_CORE = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_CORE + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP, _MERGE_TAG, _TIMESTAMP = (_CORE + t for t in ("seq", "map", "merge", "timestamp"))
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_ALLOWED_TAGS = "!!str, !!int, !!float, !!bool, !!null, !!seq and !!map"


class _Stop(Exception):
    """A limit hit while composing: nothing after it is read."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem)
        self.problem = problem


class _Key:
    """Markers for what a mapping frame expects next."""


_WANT_KEY, _SKIP, _MERGE = _Key(), _Key(), _Key()


@dataclass(eq=False)
class _Frame:
    """A list or mapping being composed: its data so far, where it is, and what it costs expanded."""

    mapping: bool
    data: Any
    path: tuple[Any, ...]
    anchor: str | None
    size: int = 1  # values inside it and itself, aliases expanded
    height: int = 1  # levels of lists and mappings, itself included
    key: Any = _WANT_KEY
    merged: bool = False  # a merge key (<<) was seen
    merges: list[dict[str, Any]] = field(default_factory=list)


class _Composer:
    """YAML parser events -> plain data (dict, list, str, int, float, bool, None, dates).

    It replaces PyYAML's composer and constructor, which recurse (libyaml's composer, in C,
    overflows the stack at ~25,000 levels) and take aliases on trust. Values an alias repeats are
    shared, as PyYAML shares them, but counted at every use, so the count is the size of the data
    anyone walking it sees; merge keys (``<<``) are followed as PyYAML follows them.
    """

    def __init__(self, max_values: int) -> None:
        import yaml.constructor
        import yaml.resolver

        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[Any, int, int] | None] = {}  # None: still open
        self.stack: list[_Frame] = []
        self.values = 0
        self.documents = 0
        self.root: Any = None
        self.max_depth, self.max_values = LIMITS["depth"], max_values
        self.resolver: Any = yaml.resolver.Resolver()
        self.constructor: Any = yaml.constructor.SafeConstructor()

    def compose(self, loader: Any) -> Any:
        import yaml.events as ev

        get_event = loader.get_event
        while True:
            event = get_event()
            kind = type(event)
            if kind is ev.ScalarEvent:
                self.scalar(event)
            elif kind is ev.MappingStartEvent or kind is ev.SequenceStartEvent:
                self.start(event, kind is ev.MappingStartEvent)
            elif kind is ev.MappingEndEvent or kind is ev.SequenceEndEvent:
                self.end()
            elif kind is ev.AliasEvent:
                self.alias(event)
            elif kind is ev.DocumentStartEvent:
                self.documents += 1
                if self.documents > 1:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise _Stop(Problem("", f"a second YAML document starts at line {line}: "
                                            "a spec is one document"))
            elif kind is ev.StreamEndEvent or event is None:
                return self.root

    def here(self) -> tuple[Any, ...]:
        """The path of the value that comes next (a mapping key: its mapping's path)."""
        if not self.stack:
            return ()
        frame = self.stack[-1]
        if not frame.mapping:
            return (*frame.path, len(frame.data))
        if isinstance(frame.key, _Key):
            return (*frame.path, "<<") if frame.key is _MERGE else frame.path
        return (*frame.path, frame.key)

    def count(self, values: int) -> None:
        self.values += values
        if self.values > self.max_values:
            raise _Stop(Problem(field_path(self.here()), f"more than {self.max_values} values with "
                                "aliases expanded (an alias bomb, or a spec too large to check)"))

    def deep(self, height: int) -> None:
        if len(self.stack) + height > self.max_depth:
            raise _Stop(Problem(field_path(self.here()), f"nested deeper than {self.max_depth} "
                                "levels of lists and mappings"))

    def refuse(self, message: str, path: tuple[Any, ...] | None = None) -> None:
        self.problems.append(Problem(field_path(self.here() if path is None else path), message))

    def scalar(self, event: Any) -> None:
        self.count(1)
        value, merge = self.construct(event)
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, 1, 0)
        self.attach(value, 1, 0, merge)

    def start(self, event: Any, mapping: bool) -> None:
        if event.tag not in (None, "!", _MAP if mapping else _SEQ):
            self.refuse(f"YAML tag {_short_tag(event.tag)} is not allowed on a "
                        f"{'mapping' if mapping else 'list'} (allowed: {_ALLOWED_TAGS})")
        self.deep(1)
        self.count(1)
        if event.anchor is not None:
            self.anchors[event.anchor] = None
        self.stack.append(_Frame(mapping, {} if mapping else [], self.here(), event.anchor))

    def end(self) -> None:
        frame = self.stack.pop()
        data = frame.data
        if frame.merges:
            # PyYAML's order: keys of the mapping itself win, then the first merged mapping, ...
            data = {}
            for merged in reversed(frame.merges):
                data.update(merged)
            data.update(frame.data)
        if frame.anchor is not None:
            self.anchors[frame.anchor] = (data, frame.size, frame.height)
        self.attach(data, frame.size, frame.height)

    def alias(self, event: Any) -> None:
        if event.anchor not in self.anchors:
            raise _Stop(Problem(field_path(self.here()), f"alias *{_cut(event.anchor)} names no anchor "
                                "defined before it"))
        target = self.anchors[event.anchor]
        if target is None:
            raise _Stop(Problem(field_path(self.here()), f"alias *{_cut(event.anchor)} is inside the "
                                "value it names (circular data)"))
        value, size, height = target
        self.deep(height)
        self.count(size)
        self.attach(value, size, height)

    def attach(self, value: Any, size: int, height: int, merge: bool = False) -> None:
        if not self.stack:
            self.root = value
            return
        frame = self.stack[-1]
        frame.size += size
        frame.height = max(frame.height, height + 1)
        if not frame.mapping:
            frame.data.append(value)
            return
        key = frame.key
        if key is _WANT_KEY:
            frame.key = self.key(frame, value, merge)
            return
        frame.key = _WANT_KEY
        if key is _MERGE:
            if isinstance(value, dict) or (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
                frame.merges += [value] if isinstance(value, dict) else value
            else:
                self.refuse("a merge key (<<) takes a mapping or a list of mappings", (*frame.path, "<<"))
        elif key is not _SKIP:
            frame.data[key] = value

    def key(self, frame: _Frame, key: Any, merge: bool) -> Any:
        if merge:
            if frame.merged:
                self.refuse("is given twice (duplicate key)", (*frame.path, "<<"))
                return _SKIP
            frame.merged = True
            return _MERGE
        if not isinstance(key, str):
            self.refuse(f"mapping key {quote(key)} is not a string (quote it)", frame.path)
            return _SKIP
        if key in frame.data:
            self.refuse("is given twice (duplicate key)", (*frame.path, key))
            return _SKIP
        return key

    def construct(self, event: Any) -> tuple[Any, bool]:
        """The scalar's value as PyYAML's SafeLoader gives it, for YAML's core tags only; whether
        it is a merge key."""
        from yaml.nodes import ScalarNode

        tag, value = event.tag, event.value
        explicit = tag is not None and tag != "!"
        if not explicit and event.implicit[0] and len(value) > LIMITS["number_chars"] and _LONG_INT.fullmatch(value):
            # PyYAML's float pattern backtracks through a long run of digits (0.25 s per 10 MB)
            self.refuse(f"a number of more than {LIMITS['number_chars']} characters")
            return None, False
        if not explicit:
            tag = self.resolver.resolve(ScalarNode, value, event.implicit)
        if tag == _STR or (not explicit and tag not in (_INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP, _MERGE_TAG)):
            # untagged `=` and the like: PyYAML's SafeLoader has no constructor for them (a crash)
            if not value.isascii() and not _encodable(value):
                self.refuse("holds a lone surrogate (\\ud800-\\udfff), which no UTF-8 file can carry")
            return value, False
        if tag == _MERGE_TAG and not explicit:
            return value, True
        if tag == _NULL:
            if value not in _NULLS:
                self.refuse(f"{quote(value)} is not a valid !!null")
            return None, False
        if tag in (_INT, _FLOAT) and len(value) > LIMITS["number_chars"]:
            self.refuse(f"a number of more than {LIMITS['number_chars']} characters")
            return None, False
        if tag == _TIMESTAMP and explicit:
            tag = None  # an explicit !!timestamp is refused below; a plain date is fine
        method = {_INT: "construct_yaml_int", _FLOAT: "construct_yaml_float", _BOOL: "construct_yaml_bool",
                  _TIMESTAMP: "construct_yaml_timestamp"}.get(tag or "")
        if method is None:
            self.refuse(f"YAML tag {_short_tag(event.tag)} is not allowed (allowed: {_ALLOWED_TAGS})")
            return None, False
        try:
            result = getattr(self.constructor, method)(ScalarNode(tag, value))
        except (ValueError, KeyError, IndexError, TypeError, OverflowError):
            self.refuse(f"{quote(value)} is not a valid {_short_tag(tag)}")
            return None, False
        if isinstance(result, int) and not -_MAX_INT < result < _MAX_INT:
            self.refuse(f"an integer of more than {LIMITS['number_chars']} digits")
            return None, False
        return result, False


_MAX_INT = 10 ** LIMITS["number_chars"]
#: PyYAML's int pattern without its sexagesimal form (which a long run of digits cannot be).
_LONG_INT = re.compile(r"[-+]?(?:0b[0-1_]+|0x[0-9a-fA-F_]+|0[0-7_]+|0|[1-9][0-9_]*)")


def _short_tag(tag: str | None) -> str:
    text = str(tag)
    return "!!" + text[len(_CORE):] if text.startswith(_CORE) else _cut(text)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# --- Python data from library callers ---------------------------------------------------------


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
                raise stop(path, f"more than {max_values} values (shared lists and mappings counted "
                                 "at every use)")
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
    if not key.isascii() and not _encodable(key):
        problems.append(Problem(field_path(walk.path), f"mapping key {quote(key)} holds a lone surrogate "
                                "(\\ud800-\\udfff), which no UTF-8 file can carry"))
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
        if not text.isascii() and not _encodable(text):
            problems.append(Problem(field_path(path), "holds a lone surrogate (\\ud800-\\udfff), which no "
                                    "UTF-8 file can carry"))
        return text
    if isinstance(value, int):
        number = int.__int__(value)
        if not -_MAX_INT < number < _MAX_INT:
            problems.append(Problem(field_path(path), f"an integer of more than {LIMITS['number_chars']} digits"))
        return number
    if isinstance(value, float):
        return float.__float__(value)
    if type(value) in (datetime.date, datetime.datetime):
        return value  # what YAML's plain dates give
    kind = "bytes (not text)" if isinstance(value, (bytes, bytearray, memoryview)) else type(value).__name__
    problems.append(Problem(field_path(path), f"a {_cut(kind)} is not a YAML/JSON value"))
    return None


# --- JSON Schema ------------------------------------------------------------------------------


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
    cls = cast("type[Validator]", cast(Callable[..., Any], extend)(Draft202012Validator, keywords,
                                                                   type_checker=types))
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
            out.append(pattern[index:index + 2])
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
        return _cut(_REPR.repr(value))
    except Exception:  # a repr that raises, e.g. an int too long to print
        return f"<{type(value).__name__}>"


def _cut(text: str) -> str:
    return text if len(text) <= QUOTE_CHARS + 3 else text[:QUOTE_CHARS] + "..."


#: A jsonschema keyword function: (validator, keyword value, instance, schema) -> errors.
Keyword = Callable[[Any, Any, Any, Any], Iterator["ValidationError"]]


def _short_message_keywords(error: type[ValidationError], const: Keyword) -> dict[str, Keyword]:
    """jsonschema's keywords whose message quotes the instance, same checks and wording, quoting it
    through ``quote``: jsonschema builds ``f"{instance!r} ..."`` eagerly, so a 7-level alias bomb
    (~300 bytes of YAML) took 4 s and 52 MB per message before any could be shortened."""

    def sized(kind: str, too_long: bool, edge: int, at_edge: str, otherwise: str) -> Keyword:
        def check(validator: Any, limit: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
            if validator.is_type(instance, kind) and (
                    len(instance) > limit if too_long else len(instance) < limit):
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
        "type": type_, "pattern": pattern, "enum": enum, "minimum": minimum, "maximum": maximum,
        "anyOf": any_of, "not": not_,
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
        out += f".{_cut(str(part))}" if out else _cut(str(part))
    return out


def schema_problems(data: Any) -> list[Problem]:
    """Schema violations, each at the path of the field it concerns (jsonschema, Draft 2020-12)."""
    return _schema_check(data)[0]


def _schema_check(data: Any) -> tuple[list[Problem], bool]:
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
        problems.append(Problem("", f"cannot be checked against the schema: {type(err).__name__}: "
                                    f"{_cut(str(err))}"))
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
        return [Problem(field_path([*parts, extra]), "unknown field") for extra in instance
                if extra not in known
                and not (isinstance(extra, str) and any(schema_regex(p).search(extra) for p in patterns))]
    if error.validator == "not" and not parts:
        return [Problem("user_data_parts", "give either user_data or user_data_parts, not both")]
    return [Problem(field_path(parts), error.message)]


# --- semantic checks --------------------------------------------------------------------------


def semantic_problems(data: Mapping[str, Any]) -> list[Problem]:
    """What the schema cannot say: names, keys, addresses, references, sizes."""
    problems: list[Problem] = []
    add = problems.append
    hostname = data.get("hostname")
    if hostname is not None and not _LABEL.fullmatch(hostname):
        add(Problem("hostname", f"{quote(hostname)} is not a valid host name (RFC 1123 label)"))
    fqdn = data.get("fqdn")
    if fqdn is not None and hostname is not None:
        name = fqdn[:-1] if fqdn.endswith(".") else fqdn
        labels = name.split(".")
        if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
            add(Problem("fqdn", f"{quote(fqdn)} is not a fully qualified domain name"))
        elif labels[0].lower() != hostname.lower():
            add(Problem("fqdn", f"{quote(fqdn)} does not start with hostname {quote(hostname)}"))
    if "uuid" in data and not _UUID.fullmatch(data["uuid"]):
        add(Problem("uuid", f"{quote(data['uuid'])} is not a UUID (32 hex digits, as 8-4-4-4-12)"))
    seen_keys: set[str] = set()
    for i, line in enumerate(data.get("ssh_authorized_keys", [])):
        where = f"ssh_authorized_keys[{i}]"
        try:
            key = parse_ssh_key(line)
        except ValueError as err:
            add(Problem(where, str(err)))
            continue
        if key.data in seen_keys:
            add(Problem(where, "duplicate key"))
        seen_keys.add(key.data)
    for name in ("user_data", "vendor_data", "user_data_parts"):
        if name in data:
            problems += _payload_problems(name, data[name])
    problems += _file_problems(data.get("files", []))
    if "network" in data:
        problems += _network_problems(data["network"])
    return problems


# --- SSH keys ---

#: NIST curves of ECDSA keys: name -> (field prime p, curve constant b, bytes per coordinate); a = -3.
_CURVES = {
    "nistp256": (2**256 - 2**224 + 2**192 + 2**96 - 1,
                 int("5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B", 16), 32),
    "nistp384": (2**384 - 2**128 - 2**96 + 2**32 - 1,
                 int("B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875A"
                     "C656398D8A2ED19D2A85C8EDD3EC2AEF", 16), 48),
    "nistp521": (2**521 - 1,
                 int("0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF109E156193951EC7E937B1652"
                     "C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00", 16), 66),
}


def parse_ssh_key(line: str) -> SSHKey:
    """Parse ``type base64 [comment]`` (authorized_keys without options; surrounding whitespace
    ignored). The blob is read in full as its type lays it out (RSA exponent and modulus, DSA
    p/q/g/y, Ed25519's 32 bytes, ECDSA's curve and a point on it, a security key's application),
    every length field checked against the bytes that follow and nothing left over."""
    text = line.strip(" \t\r\n")
    if CONTROL.search(text):
        raise ValueError("holds a control character or line break (a key is one line of authorized_keys)")
    fields = re.split(" +", text, maxsplit=2)
    if len(fields) < 2:
        raise ValueError("not an OpenSSH public key (expected 'type base64 [comment]')")
    key_type, blob = fields[0], fields[1]
    if key_type not in SSH_KEY_TYPES:
        raise ValueError(f"unknown key type {quote(key_type)}")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("key data is not valid base64") from None
    if base64.b64encode(raw).decode() != blob:
        raise ValueError("key data is not canonical base64 (stray padding bits)")
    _check_key_blob(key_type, _KeyBlob(raw))
    return SSHKey(key_type, blob, fields[2] if len(fields) > 2 else "")


class _KeyBlob:
    """An SSH wire-format key blob read field by field (RFC 4251 strings and mpints)."""

    def __init__(self, raw: bytes) -> None:
        self.raw, self.pos = raw, 0

    def string(self, what: str) -> bytes:
        left = len(self.raw) - self.pos
        if left < 4:
            raise ValueError(f"key data ends before the length of its {what}")
        size = int.from_bytes(self.raw[self.pos:self.pos + 4], "big")
        if size > left - 4:
            raise ValueError(f"key data is cut short: its {what} claims {size} bytes, {left - 4} follow")
        self.pos += 4 + size
        return self.raw[self.pos - size:self.pos]

    def mpint(self, what: str) -> int:
        data = self.string(what)
        if data and data[0] & 0x80:
            raise ValueError(f"key data: its {what} is negative")
        if len(data) > 1 and data[0] == 0 and not data[1] & 0x80:
            raise ValueError(f"key data: its {what} has a needless leading zero byte")
        if len(data) > 2049:  # OpenSSH: at most 16384 bits
            raise ValueError(f"key data: its {what} is longer than 16384 bits")
        return int.from_bytes(data, "big")

    def end(self) -> None:
        if self.pos != len(self.raw):
            raise ValueError(f"key data has {len(self.raw) - self.pos} bytes after the key")


def _check_key_blob(key_type: str, blob: _KeyBlob) -> None:
    if blob.string("key type") != key_type.encode():
        raise ValueError(f"key data does not hold a {key_type} key")
    if key_type == "ssh-rsa":
        exponent, modulus = blob.mpint("RSA exponent"), blob.mpint("RSA modulus")
        if exponent < 3 or exponent % 2 == 0:
            raise ValueError("key data: its RSA exponent is not an odd number of at least 3")
        if not 1024 <= modulus.bit_length() <= 16384 or modulus % 2 == 0:
            raise ValueError(f"key data: its RSA modulus is not an odd number of 1024 to 16384 bits "
                             f"(it has {modulus.bit_length()})")
    elif key_type == "ssh-dss":
        p, q, g, y = (blob.mpint(f"DSA {name}") for name in "pqgy")
        if not (0 < q < p and 1 < g < p and 1 < y < p):
            raise ValueError("key data: its DSA parameters are out of range")
    elif key_type.endswith("ed25519") or key_type.startswith("sk-ssh-ed25519"):
        if len(blob.string("Ed25519 key")) != 32:
            raise ValueError("key data: its Ed25519 key is not 32 bytes")
    else:
        curve = key_type.split("-")[-1].split("@")[0]
        if blob.string("curve name") != curve.encode():
            raise ValueError(f"key data does not name the curve {curve}")
        _check_point(curve, blob.string("public point"))
    if key_type.startswith("sk-"):
        application = blob.string("security key application")
        if not application or b"\0" in application:
            raise ValueError("key data: its security key application is empty or holds a NUL byte")
    blob.end()


def _check_point(curve: str, point: bytes) -> None:
    p, b, size = _CURVES[curve]
    if len(point) != 1 + 2 * size or point[0] != 4:
        raise ValueError(f"key data: its public point is not an uncompressed {curve} point "
                         f"({1 + 2 * size} bytes starting with 04)")
    x, y = int.from_bytes(point[1:1 + size], "big"), int.from_bytes(point[1 + size:], "big")
    if x >= p or y >= p or (y * y - x * x * x + 3 * x - b) % p:
        raise ValueError(f"key data: its public point is not on the curve {curve}")


# --- payloads, files, network ---


def _payload_problems(name: str, value: Any) -> list[Problem]:
    """The payload's size as written (rendered: YAML for a mapping, MIME for parts), and part names."""
    problems = []
    if isinstance(value, list):
        for i, part in enumerate(value):
            filename = part.get("filename")
            if filename is not None and (filename in (".", "..") or filename != filename.strip()):
                problems.append(Problem(f"{name}[{i}].filename", f"{quote(filename)} is not a file name "
                                        "(no '.', '..', or surrounding spaces)"))
    limit = LIMITS["payload_bytes"]
    exact = True
    if isinstance(value, str):
        size = len(value.encode())
    else:
        # Bounds first: a huge payload is refused, and a small one passed, without rendering it
        # (the renderer renders it anyway; YAML with text outside ASCII writes ~0.5 MB/s).
        low, high = _rendered_size_bounds(value)
        size, exact = low, False
        if low <= limit < high:
            from configdrive.render.userdata import render_payload

            size, exact = len(render_payload(_payload(value)) or b""), True
    if size > limit:
        problems.append(Problem(name, f"larger than the {limit} byte limit as written "
                                      f"({'' if exact else 'at least '}{size} bytes)"))
    return problems


#: Upper bounds of what one value adds to a rendered payload besides its text: for YAML,
#: indentation of 64 levels, "- ", ": ", a long key's "? ", quotes, an anchor, line breaks; for
#: MIME, a part's headers (a 255-character file name RFC 2231-encoded) and boundary lines.
_YAML_NODE_BYTES, _MIME_PART_BYTES = 400, 8192


def _rendered_size_bounds(value: Any) -> tuple[int, int]:
    """Lower and upper bounds of the bytes a mapping (as YAML) or a list of parts (as MIME) is
    written as, without rendering it. Lower: the UTF-8 text each list or mapping holds, counted
    once (YAML writes a shared one once, as an alias; CRLF may become LF). Upper: every use
    counted, each character escaped (at most 4 bytes per byte), each line break re-indented."""
    texts: dict[int, tuple[int, int, int]] = {}  # id(str) -> (UTF-8 bytes, CRLFs, line breaks)

    def text(item: str) -> tuple[int, int, int]:  # an alias repeats a string: measure it once
        known = texts.get(id(item))
        if known is None:
            size = len(item) if item.isascii() else len(item.encode())
            breaks = item.count("\n") + (0 if item.isascii() else sum(map(item.count, "\x85\u2028\u2029")))
            known = texts[id(item)] = (size, item.count("\r\n"), breaks)
        return known

    parts = isinstance(value, list)
    low = high = 0
    seen: set[int] = set()
    todo: list[tuple[Any, bool]] = [(value, False)]
    while todo:
        item, again = todo.pop()
        high += _YAML_NODE_BYTES
        if isinstance(item, str):
            size, crlf, breaks = text(item)
            if not again:
                low += size - crlf
            if parts:  # ASCII is written as it is (7bit), other text as base64 of its UTF-8
                high += size if item.isascii() else -(-size // 3) * 4 * 77 // 76
            else:
                high += 4 * size + (breaks + size // 32768) * _YAML_NODE_BYTES
        elif isinstance(item, (dict, list)):
            again = again or id(item) in seen
            seen.add(id(item))
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            todo += [(child, again) for child in children]
        elif isinstance(item, int) and not isinstance(item, bool):
            high += item.bit_length() // 3 + 2
        else:
            high += 64  # float, bool, null, date
    return low, high + (_MIME_PART_BYTES * (len(value) + 1) if parts else 0)


def _file_problems(files: list[Mapping[str, str]]) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    total = 0
    for i, entry in enumerate(files):
        path, where = entry["path"], f"files[{i}].path"
        parts = path.split("/")
        if not path.startswith("/") or path.endswith("/"):
            problems.append(Problem(where, f"{quote(path)} must be an absolute path to a file"))
        elif any(p in ("", ".", "..") for p in parts[1:]):
            problems.append(Problem(where, f"{quote(path)} must not contain empty, '.' or '..' parts"))
        elif any(len(p.encode()) > 255 for p in parts):
            problems.append(Problem(where, f"{quote(path)} has a name longer than 255 bytes (NAME_MAX)"))
        elif CONTROL.search(path):
            problems.append(Problem(where, f"{quote(path)} must not contain control characters"))
        if path in seen:
            problems.append(Problem(where, f"{quote(path)} is given twice"))
        seen.add(path)
        content = entry["content"]
        size = len(content) if content.isascii() else len(content.encode())
        total += size
        if size > LIMITS["file_bytes"]:
            problems.append(Problem(f"files[{i}].content", f"larger than the {LIMITS['file_bytes']} byte limit"))
    if total > LIMITS["files_total_bytes"]:
        problems.append(Problem("files", f"together larger than {LIMITS['files_total_bytes']} bytes"))
    return problems


def _network_problems(net: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    add = problems.append
    ethernets = net.get("ethernets", {})
    names: dict[str, str] = {}
    macs: dict[str, str] = {}
    bonded: dict[str, str] = {}
    defaults: dict[int, str] = {}
    devices = [dev for section, _ in _SECTIONS for dev in net.get(section, {}).values()]
    for what, count in (("addresses", sum(len(d.get("addresses", ())) for d in devices)),
                        ("routes", sum(len(d.get("routes", ())) for d in devices)),
                        ("DNS servers", sum(len(d.get("nameservers", {}).get("addresses", ())) for d in devices))):
        if count > LIMITS["network_entries"]:
            # rendering network_data.json takes time in addresses x routes
            add(Problem("network", f"{count} {what} in all; at most {LIMITS['network_entries']}"))
    for section, _kind in _SECTIONS:
        for dev_id, dev in net.get(section, {}).items():
            base = f"network.{section}.{dev_id}"
            name = dev.get("set-name", dev_id)
            if name in names:
                add(Problem(base, f"interface name {quote(name)} is also used by {names[name]}"))
            names[name] = base
            mac = dev.get("match", {}).get("macaddress", dev.get("macaddress"))
            mac_field = f"{base}.match.macaddress" if section == "ethernets" else f"{base}.macaddress"
            if mac is not None:
                if not _MAC.fullmatch(mac):
                    add(Problem(mac_field, f"{quote(mac)} is not a MAC address"))
                elif int(mac[:2], 16) & 1:
                    add(Problem(mac_field, f"{quote(mac)} is a multicast address, not a NIC's"))
                elif section == "ethernets" and mac.lower() in macs:
                    add(Problem(mac_field, f"{quote(mac)} is also the MAC of {macs[mac.lower()]}"))
                else:
                    macs[mac.lower()] = base
            if section == "bonds":
                for j, member in enumerate(dev["interfaces"]):
                    where = f"{base}.interfaces[{j}]"
                    if member not in ethernets:
                        add(Problem(where, f"{quote(member)} is not an ethernet defined in network.ethernets"))
                    elif member in bonded:
                        add(Problem(where, f"{quote(member)} is already a member of {bonded[member]}"))
                    else:
                        bonded[member] = base
                primary = dev.get("parameters", {}).get("primary")
                if primary is not None and primary not in dev["interfaces"]:
                    add(Problem(f"{base}.parameters.primary", f"{quote(primary)} is not one of this bond's "
                                "interfaces"))
            if section == "vlans" and dev["link"] not in ethernets and dev["link"] not in net.get("bonds", {}):
                add(Problem(f"{base}.link", f"{quote(dev['link'])} is not an ethernet or bond defined in network"))
            problems += _l3_problems(base, dev, defaults)
    for member, bond in bonded.items():
        dev = ethernets[member]
        if any(k in dev for k in ("addresses", "dhcp4", "dhcp6", "routes", "nameservers")):
            add(Problem(f"network.ethernets.{member}", f"is a member of {bond} and cannot have "
                        "its own addresses, DHCP, routes or nameservers"))
    return problems


def _ip_text(text: str) -> str:
    """``text`` if it is spelled like an IP address or network (no zone index, no spaces), else ValueError."""
    if not _IP_TEXT.fullmatch(text):
        raise ValueError(text)
    return text


def _l3_problems(base: str, dev: Mapping[str, Any], defaults: dict[int, str]) -> list[Problem]:
    problems: list[Problem] = []
    add = problems.append
    subnets = []
    for j, addr in enumerate(dev.get("addresses", [])):
        where = f"{base}.addresses[{j}]"
        try:
            iface = ipaddress.ip_interface(_ip_text(addr))
        except ValueError:
            version = "IPv6" if ":" in addr else "IPv4"
            add(Problem(where, f"{quote(addr)} is not a valid {version} interface address"))
            continue
        if "/" not in addr:
            add(Problem(where, f"{quote(addr)} needs a prefix length, e.g. {addr}/{iface.max_prefixlen}"))
        elif iface.ip == iface.network.network_address and iface.network.prefixlen < iface.max_prefixlen - 1 \
                and iface.version == 4:
            add(Problem(where, f"{quote(addr)} is the network address, not a host address"))
        subnets.append(iface.network)
    for j, route in enumerate(dev.get("routes", [])):
        where = f"{base}.routes[{j}]"
        try:
            via = ipaddress.ip_address(_ip_text(route["via"]))
        except ValueError:
            add(Problem(f"{where}.via", f"{quote(route['via'])} is not an IP address"))
            continue
        try:
            to = normalise_route_target(route["to"], via.version)
        except ValueError as err:
            add(Problem(f"{where}.to", str(err)))
            continue
        if to.version != via.version:
            add(Problem(f"{where}.via", f"IPv{via.version} gateway for an IPv{to.version} destination"))
            continue
        dhcp = dev.get("dhcp4" if via.version == 4 else "dhcp6", False) or (
            via.version == 6 and dev.get("accept-ra", False))
        link_local = via.version == 6 and via.is_link_local
        if not dhcp and not link_local and not any(via in net for net in subnets):
            add(Problem(f"{where}.via", f"gateway {via} is not on any subnet of this interface"))
        if to.prefixlen == 0:
            if to.version in defaults:
                add(Problem(where, f"a second IPv{to.version} default route (first in {defaults[to.version]})"))
            defaults[to.version] = where
    ns = dev.get("nameservers", {})
    for j, server in enumerate(ns.get("addresses", [])):
        try:
            ipaddress.ip_address(_ip_text(server))
        except ValueError:
            add(Problem(f"{base}.nameservers.addresses[{j}]", f"{quote(server)} is not an IP address"))
    for j, domain in enumerate(ns.get("search", [])):
        name = domain[:-1] if domain.endswith(".") else domain
        if not all(_LABEL.fullmatch(label) for label in name.split(".")):
            add(Problem(f"{base}.nameservers.search[{j}]", f"{quote(domain)} is not a domain name"))
    return problems


def normalise_route_target(to: str, version: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``default`` -> ``0.0.0.0/0`` or ``::/0`` (by the gateway's family); otherwise a strict network."""
    if to == "default":
        return ipaddress.ip_network("::/0" if version == 6 else "0.0.0.0/0")
    try:
        return ipaddress.ip_network(_ip_text(to), strict=True)
    except ValueError as err:
        reason = "" if str(err) == to else f" ({_cut(str(err))})"
        raise ValueError(f"{quote(to)} is not a network{reason}") from None


# --- building the model -----------------------------------------------------------------------


def _build(data: Mapping[str, Any]) -> VMSpec:
    keys = tuple(parse_ssh_key(k) for k in data.get("ssh_authorized_keys", []))
    user_data = _payload(data.get("user_data"))
    if "user_data_parts" in data:
        user_data = _payload(data["user_data_parts"])
    fqdn = data.get("fqdn")
    return VMSpec(
        instance_id=data["instance_id"],
        hostname=data["hostname"],
        uuid=str(uuidlib.UUID(data["uuid"])) if "uuid" in data
        else str(uuidlib.uuid5(UUID_NAMESPACE, data["instance_id"])),
        fqdn=(fqdn[:-1] if fqdn.endswith(".") else fqdn) if fqdn else None,
        availability_zone=data.get("availability_zone"),
        meta=dict(data.get("meta", {})),
        ssh_authorized_keys=keys,
        user_data=user_data,
        vendor_data=_payload(data.get("vendor_data")),
        network=_network(data["network"]) if "network" in data else None,
        files=tuple(File(f["path"], f["content"].encode()) for f in data.get("files", [])),
    )


def _payload(value: Any) -> str | Mapping[str, Any] | tuple[Part, ...] | None:
    if isinstance(value, list):
        return tuple(Part(p["content_type"], p["content"], p.get("filename")) for p in value)
    return value  # type: ignore[no-any-return]


def _network(net: Mapping[str, Any]) -> Network:
    names = {dev_id: dev.get("set-name", dev_id) for section, _ in _SECTIONS
             for dev_id, dev in net.get(section, {}).items()}
    interfaces = []
    for section, kind in _SECTIONS:
        for dev_id, dev in net.get(section, {}).items():
            routes = []
            for r in dev.get("routes", []):
                via = ipaddress.ip_address(r["via"])
                routes.append(Route(str(normalise_route_target(r["to"], via.version)), str(via),
                                    r.get("metric")))
            ns = dev.get("nameservers")
            mac = dev.get("match", {}).get("macaddress", dev.get("macaddress"))
            interfaces.append(Interface(
                id=dev_id,
                kind=kind,  # type: ignore[arg-type]
                name=names[dev_id],
                macaddress=mac.lower() if mac else None,
                addresses=tuple(str(ipaddress.ip_interface(a)) for a in dev.get("addresses", [])),
                dhcp4=dev.get("dhcp4", False),
                dhcp6=dev.get("dhcp6", False),
                accept_ra=dev.get("accept-ra"),
                routes=tuple(routes),
                nameservers=Nameservers(tuple(ns.get("addresses", [])), tuple(ns.get("search", [])))
                if ns else None,
                mtu=dev.get("mtu"),
                bond_interfaces=tuple(dev.get("interfaces", ())),
                bond_parameters=dict(dev.get("parameters", {})),
                vlan_id=dev.get("id") if kind == "vlan" else None,
                vlan_link=dev.get("link"),
            ))
    return Network(tuple(interfaces))
