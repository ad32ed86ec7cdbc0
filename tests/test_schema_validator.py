"""configdrive.schema against the real jsonschema: same problems (paths and messages) for the
fixture specs and for specs mutated by Hypothesis; and ``build`` never imports jsonschema."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configdrive.errors import Problem
from configdrive.schema import Validator, is_type
from configdrive.spec import field_path, schema_problems, schema_text

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "fixtures" / "specs").glob("*/*.yaml"))
SCHEMA = json.loads(schema_text())
ORACLE = jsonschema.Draft202012Validator(SCHEMA)


def oracle_problems(data: Any) -> list[Problem]:
    """schema_problems as it was written on jsonschema: best_match inside anyOf, then our wording."""
    problems = []
    for error in ORACLE.iter_errors(data):
        if error.context:
            error = jsonschema.exceptions.best_match(error.context)
        parts = list(error.absolute_path)
        message = error.message
        if error.validator == "required":
            parts += re.findall(r"'([^']+)' is a required property", message)[:1]
            message = "is required"
        elif error.validator == "additionalProperties" and error.validator_value is False:
            for extra in re.findall(r"'([^']+)'", message.split("(", 1)[-1]):
                problems.append(Problem(field_path([*parts, extra]), "unknown field"))
            continue
        elif error.validator == "not" and not parts:
            parts, message = ["user_data_parts"], "give either user_data or user_data_parts, not both"
        problems.append(Problem(field_path(parts), message))
    return sorted(set(problems))


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_problems_match_jsonschema(path: Path) -> None:
    data = load(path)
    assert sorted(set(schema_problems(data))) == oracle_problems(data)


BASES = [load(p) for p in FIXTURES if isinstance(load(p), dict)]

# Values that hit every keyword: wrong types, edge lengths, bools posing as numbers, bad names.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False, width=32),
    st.sampled_from(["", "x", "eth0", "bad name!", "a" * 300, "text/x-shellscript", "a/b/c",
                     "active-backup", "fast", "layer2", "2001:db8::1/64", "default", "-x", "é"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["content", "content_type", "filename", "path", "to",
                                         "via", "interfaces", "id", "link", "x", "mode"]),
                        inner, max_size=3),
    ),
    max_leaves=6,
)


def paths_of(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths_of(value, (*prefix, index))
    return found


# Same-type replacements reach the keywords behind a type check (pattern, lengths, enum, bounds).
TWEAKS: dict[type, st.SearchStrategy[Any]] = {
    str: st.sampled_from(["", "x", "eth0", "bad name!", "a" * 300, "text/x-shellscript", "a/b",
                          "active-backup", "slow", "layer3+4", "balance-zz", "-x", "é", "x" * 16]),
    int: st.sampled_from([-1, 0, 1, 2, 3, 67, 68, 4094, 4095, 65536, 4294967296]),
    bool: st.booleans(),
    float: st.floats(-10, 5000),
}
ADDED_KEYS = ["extra", "set-name", "mtu", "user_data_parts", "user_data", "vendor_data", "meta",
              "id", "metric", "parameters", "mode", "lacp-rate", "transmit-hash-policy", "version",
              "mii-monitor-interval", "filename", "primary", "files", "routes", "dhcp4"]


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    """A fixture spec with a few fields tweaked, replaced, removed or added."""
    data = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths_of(data)))
        if not path:
            continue
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["tweak", "tweak", "replace", "delete", "add", "add"]))
        old = parent[path[-1]]
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(old, dict):
            old[draw(st.sampled_from(ADDED_KEYS))] = draw(st.one_of(values, *TWEAKS.values()))
        elif action == "tweak" and type(old) in TWEAKS:
            parent[path[-1]] = draw(TWEAKS[type(old)])
        else:
            parent[path[-1]] = draw(values)
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_mutated_specs_match_jsonschema(data: Any) -> None:
    assert sorted(set(schema_problems(data))) == oracle_problems(data)
    assert Validator(SCHEMA).is_valid(data) == ORACLE.is_valid(data)


@settings(max_examples=300, deadline=None)
@given(values, st.sampled_from(["string", "object", "array", "boolean", "integer", "number", "null"]))
def test_types_match_jsonschema(value: Any, kind: str) -> None:
    assert is_type(value, kind) == ORACLE.is_type(value, kind)


def test_unknown_keyword_refused() -> None:
    with pytest.raises(ValueError, match="not supported: oneOf"):
        Validator({"properties": {"a": {"oneOf": [{"type": "string"}]}}})


def test_build_does_not_import_jsonschema(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from configdrive.cli import main\n"
        f"assert main(['build', {str(ROOT / 'fixtures/specs/valid/example.yaml')!r}, "
        f"'-o', {str(tmp_path / 'seed.iso')!r}]) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('jsonschema', 'pycdlib'))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
