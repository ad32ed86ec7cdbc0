"""Spec text (YAML, a superset of JSON) -> plain data, bounded: ``parse_document`` and its composer.

YAML is composed from parser events (libyaml's when present) by ``_Composer``, which never
recurses, so no nesting depth can crash either loader; it refuses, with the path where it happened,
nesting deeper than ``LIMITS["depth"]``, more than ``LIMITS["values"]`` values with aliases
expanded (an alias bomb stops after that many, in milliseconds), circular aliases, duplicate and
non-string mapping keys, tags outside YAML's core types and numbers Python cannot print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from configdrive.errors import Problem, SpecError
from configdrive.limits import LIMITS, MAX_INT
from configdrive.specschema import cut, field_path, quote


def parse_document(raw: bytes | str, source: str | None = None, *, max_values: int | None = None) -> Any:
    """Parse spec text (YAML, a superset of JSON) into plain data, bounded (see the module
    docstring); syntax errors and refused YAML become SpecError. ``max_values`` replaces
    ``LIMITS["values"]`` for documents that are not specs (a leases table, a QMP map)."""
    import yaml

    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError as err:
            raise SpecError(
                [Problem("", f"spec text cannot be encoded as UTF-8 ({err.reason} at character {err.start})")], source
            ) from None
    if len(raw) > LIMITS["spec_bytes"]:
        raise SpecError([Problem("", f"spec is larger than {LIMITS['spec_bytes']} bytes")], source)
    limit = LIMITS["values"] if max_values is None else max_values
    try:
        composer, data = _compose(raw, _yaml_loader(), limit, source)
    except _LibyamlDepth:
        # libyaml (as bundled with PyYAML 6.0.4) stops deep flow text before any event reaches
        # the composer: PyYAML's own parser streams it, so ours names the path where it went too deep.
        composer, data = _compose(raw, yaml.SafeLoader, limit, source)
    if composer.problems:
        raise SpecError(composer.problems, source)
    return data


class _LibyamlDepth(Exception):
    """libyaml refused the text for its own nesting limit."""


def _compose(raw: bytes, loader_class: Any, max_values: int, source: str | None) -> tuple[_Composer, Any]:
    """The composer and the data after reading ``raw`` with ``loader_class``'s parser; SpecError
    on bad text."""
    import yaml

    composer = _Composer(max_values)
    loader = loader_class(raw)
    try:
        data = composer.compose(loader)
    except _Stop as stop:
        raise SpecError([*composer.problems, stop.problem], source) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(err, "problem", None) or str(err)
        if "nesting depth" in reason and loader_class is not yaml.SafeLoader:
            raise _LibyamlDepth from err
        raise SpecError([Problem("", f"not valid YAML/JSON{where}: {cut(reason)}")], source) from err
    finally:
        loader.dispose()
    return composer, data


def _yaml_loader() -> Any:
    """libyaml's parser when PyYAML has it (about 20x faster), else PyYAML's own; only its events
    are used, so both give the same data and neither can recurse."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
                    raise _Stop(Problem("", f"a second YAML document starts at line {line}: a spec is one document"))
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
            raise _Stop(
                Problem(
                    field_path(self.here()),
                    f"more than {self.max_values} values with "
                    "aliases expanded (an alias bomb, or a spec too large to check)",
                )
            )

    def deep(self, height: int) -> None:
        if len(self.stack) + height > self.max_depth:
            raise _Stop(
                Problem(field_path(self.here()), f"nested deeper than {self.max_depth} levels of lists and mappings")
            )

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
            self.refuse(
                f"YAML tag {_short_tag(event.tag)} is not allowed on a "
                f"{'mapping' if mapping else 'list'} (allowed: {_ALLOWED_TAGS})"
            )
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
            raise _Stop(
                Problem(field_path(self.here()), f"alias *{cut(event.anchor)} names no anchor defined before it")
            )
        target = self.anchors[event.anchor]
        if target is None:
            raise _Stop(
                Problem(
                    field_path(self.here()), f"alias *{cut(event.anchor)} is inside the value it names (circular data)"
                )
            )
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
            if not value.isascii() and not encodable(value):
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
        method = {
            _INT: "construct_yaml_int",
            _FLOAT: "construct_yaml_float",
            _BOOL: "construct_yaml_bool",
            _TIMESTAMP: "construct_yaml_timestamp",
        }.get(tag or "")
        if method is None:
            self.refuse(f"YAML tag {_short_tag(event.tag)} is not allowed (allowed: {_ALLOWED_TAGS})")
            return None, False
        try:
            result = getattr(self.constructor, method)(ScalarNode(tag, value))
        except (ValueError, KeyError, IndexError, TypeError, OverflowError):
            self.refuse(f"{quote(value)} is not a valid {_short_tag(tag)}")
            return None, False
        if isinstance(result, int) and not -MAX_INT < result < MAX_INT:
            self.refuse(f"an integer of more than {LIMITS['number_chars']} digits")
            return None, False
        return result, False


#: PyYAML's int pattern without its sexagesimal form (which a long run of digits cannot be).
_LONG_INT = re.compile(r"[-+]?(?:0b[0-1_]+|0x[0-9a-fA-F_]+|0[0-7_]+|0|[1-9][0-9_]*)")


def _short_tag(tag: str | None) -> str:
    text = str(tag)
    return "!!" + text[len(_CORE) :] if text.startswith(_CORE) else cut(text)


def encodable(text: str) -> bool:
    """Whether UTF-8 can carry ``text`` (it holds no lone surrogate)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
