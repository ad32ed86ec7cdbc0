"""The VM spec's JSON Schema as configdrive checks it with jsonschema: same verdicts and paths as
stock jsonschema, anyOf reported on the branch the user meant, messages short whatever the value.

Two readings are exact where stock jsonschema is lax, and the oracle here reads them the same way:
``integer`` is an int (stock also takes 1500.0), and a pattern's ``$`` is the end of the text as
in ECMA-262 (Python's ``$`` also matches before a final newline); each has its own test."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema.exceptions import best_match

from configdrive import SpecError, load_spec, parse_spec, specschema
from configdrive.errors import Problem
from configdrive.spec import check_data
from configdrive.specschema import schema_problems, schema_text
from tests.conftest import INVALID_SPECS, VALID_SPECS, spec_id

SCHEMA = json.loads(schema_text())
# jsonschema's own keywords and messages (quoting whole values), with an int-only "integer"
STOCK = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=(
        jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
            "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)
        )
    ),
)(SCHEMA)
MESSAGE_CHARS = 300


def stock_problems(data: Any) -> list[Problem]:
    """schema_problems as stock jsonschema's keywords give them (same mapping to our words)."""
    problems: list[Problem] = []
    for error in STOCK.iter_errors(data):
        problems += specschema._problems_of(best_match([error]) if error.context else error)
    return list(dict.fromkeys(problems))


def fixture_spec(path: Path) -> Any:
    """The spec a fixture holds: a valid fixture is a spec, an invalid one holds it under ``spec``."""
    case = yaml.safe_load(path.read_text())
    return case if path.parent.name == "valid" else case.get("spec")


def assert_short(problems: list[Problem]) -> None:
    assert problems
    for problem in problems:
        assert len(str(problem)) < MESSAGE_CHARS, str(problem)[:MESSAGE_CHARS]


@pytest.mark.parametrize("path", VALID_SPECS, ids=spec_id)
def test_valid_fixture_has_no_schema_problem(path: Path) -> None:
    data = fixture_spec(path)
    assert schema_problems(data) == [] and STOCK.is_valid(data)


@pytest.mark.parametrize("path", [p for p in INVALID_SPECS if fixture_spec(p) is not None], ids=spec_id)
def test_invalid_fixture_schema_problems_are_stock_ones_at_expected_paths(path: Path) -> None:
    # The whole expected list (schema and semantic problems) is tests/test_spec.py's check.
    data = fixture_spec(path)
    problems = schema_problems(data)
    assert problems == stock_problems(data)
    assert {p.path for p in problems} <= set(yaml.safe_load(path.read_text())["expect"])


def test_schema_errors_fixture_in_our_words() -> None:
    data = fixture_spec(Path(__file__).parent.parent / "fixtures/specs/invalid/schema-errors.yaml")
    assert [str(p) for p in check_data(data)] == [
        "colour: unknown field",
        "instance_id: is required",
        "network.ethernets.eth0.dhcp4: 'yes' is not of type 'boolean'",
        "network.ethernets.eth0.mtu: 10 is less than the minimum of 68",
        "ssh_authorized_keys[0]: 42 is not of type 'string'",
    ]


def test_any_of_reports_the_branch_meant() -> None:
    # user_data may be a string, a mapping or a list of parts: a list means parts, so the fault
    # is the part's field, not "[...] is not of type 'string'".
    parts = [{"content_type": "text/x-shellscript", "content": "#!/bin/sh"}, {"content_type": "text/plain"}]
    assert check_data({"instance_id": "i", "hostname": "h", "user_data": parts}) == [
        Problem("user_data[1].content", "is required")
    ]
    bad_type = [{"content_type": "Shell Script", "content": "x"}]
    assert check_data({"instance_id": "i", "hostname": "h", "vendor_data": bad_type}) == [
        Problem("vendor_data[0].content_type", "'Shell Script' does not match '^[a-z0-9.+-]+/[a-z0-9.+-]+$'")
    ]
    # no branch fits better than another: the anyOf itself
    assert check_data({"instance_id": "i", "hostname": "h", "user_data": 5}) == [
        Problem("user_data", "5 is not valid under any of the given schemas")
    ]


def test_both_user_data_forms_is_one_problem() -> None:
    data = {
        "instance_id": "i",
        "hostname": "h",
        "user_data": "x",
        "user_data_parts": [{"content_type": "text/plain", "content": "y"}],
    }
    assert check_data(data) == [Problem("user_data_parts", "give either user_data or user_data_parts, not both")]


# One wrong value per overridden keyword: the message is jsonschema's, but for the quote of the value.
KEYWORD_CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "type": ({"hostname": 5}, 5),
    "pattern": ({"instance_id": "-x"}, "-x"),
    "enum": ({"network": {"bonds": {"b": {"interfaces": ["e"], "parameters": {"mode": "fast"}}}}}, "fast"),
    "minimum": ({"network": {"ethernets": {"e": {"mtu": 67}}}}, 67),
    "maximum": ({"network": {"vlans": {"v": {"id": 4095, "link": "e"}}}}, 4095),
    "minLength": ({"hostname": ""}, ""),
    "maxLength": ({"hostname": "h" * 64}, "h" * 64),
    "minItems": ({"user_data_parts": []}, []),
    "maxItems": ({"ssh_authorized_keys": ["k"] * 101}, ["k"] * 101),
    "maxProperties": ({"meta": {f"k{i}": "v" for i in range(129)}}, {f"k{i}": "v" for i in range(129)}),
    "anyOf": ({"vendor_data": None}, None),
}


@pytest.mark.parametrize("keyword", KEYWORD_CASES)
def test_messages_are_jsonschemas_but_for_the_quote(keyword: str) -> None:
    fields, value = KEYWORD_CASES[keyword]
    data = {"instance_id": "i", "hostname": "h", **fields}
    [ours], [stock] = schema_problems(data), stock_problems(data)
    assert ours.path == stock.path and stock.message.startswith(repr(value))
    assert ours.message == specschema.quote(value) + stock.message[len(repr(value)) :]
    if len(repr(value)) <= specschema.QUOTE_CHARS:
        assert ours == stock


def test_every_keyword_quoting_the_instance_is_shortened() -> None:
    """A keyword added to the schema whose jsonschema message quotes the whole value fails here."""

    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set(node).union(*map(keys, node.values()))
        return set().union(*map(keys, node)) if isinstance(node, list) else set()

    stock = jsonschema.Draft202012Validator.VALIDATORS
    ours = type(specschema._validator()).VALIDATORS
    used = keys(SCHEMA) & set(stock)
    # these quote no instance: they descend, or name schema text; unknown keys are rebuilt per key
    quote_nothing = {"$ref", "properties", "additionalProperties", "propertyNames", "items", "required", "const"}
    assert {k for k in used - quote_nothing if ours[k] is stock[k]} == set()


def test_one_validator_and_format_checked_only_if_used() -> None:
    validator = specschema._validator()
    assert validator is specschema._validator()
    # jsonschema's Validator protocol has no format_checker
    assert (cast(Any, validator).format_checker is None) == ('"format"' not in schema_text())


HUGE = "x" * 5_000_000


def deep(levels: int) -> Any:
    """A list in a mapping in a list ... ``levels`` deep (builtin repr: RecursionError at ~1000)."""
    value: Any = "leaf"
    for _ in range(levels):
        value = [{"k": value}]
    return value


@pytest.mark.parametrize(
    "data",
    [
        {"instance_id": HUGE, "hostname": HUGE},  # pattern, maxLength
        {"instance_id": "i", "hostname": "h", HUGE: 1, "meta": {HUGE: 2}},  # unknown field, key in path
        {"instance_id": "i", "hostname": deep(5000), "ssh_authorized_keys": [deep(5000)], "user_data": [deep(5000)]},
        {"instance_id": "i", "hostname": "h", "network": {"ethernets": {"e": {"mtu": 10**5000}}}},
    ],
    ids=["5MB-string", "5MB-key", "deep", "huge-int"],
)
def test_messages_stay_short(data: Any) -> None:
    problems = check_data(data)
    assert_short(problems)
    assert "" not in {p.path for p in problems}  # checked to the end (builtin repr fails at depth)


def test_alias_bomb_is_refused_while_parsing() -> None:
    # 9 levels of ten aliases: 10**9 leaves in a few hundred bytes; refused where the count of
    # values (aliases expanded) passes LIMITS["values"], long before anything walks the data
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "instance_id: i\nhostname: h\nuser_data:\n" + "\n".join("  " + line for line in lines) + "\n"
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert time.perf_counter() - start < 1
    [problem] = info.value.problems
    assert problem.path.startswith("user_data.a4") and "more than 20000 values" in problem.message


def test_aliases_within_the_limit_in_wrong_places_give_short_messages() -> None:
    # 3 levels of ten: 1,110 values per use, quoted in messages by jsonschema's keywords
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 3)]
    text = (
        "bomb:\n"
        + "\n".join("  " + line for line in lines)
        + (
            "\ninstance_id: i\nhostname: *a2\nssh_authorized_keys: [*a2]\nuser_data: [*a2]\n"
            "meta: {k: *a2}\nfiles: [{path: /x, content: *a2}]\n"
        )
    )
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert {p.path for p in info.value.problems} == {
        "bomb",
        "hostname",
        "ssh_authorized_keys[0]",
        "user_data[0]",
        "meta.k",
        "files[0].content",
    }
    assert_short(info.value.problems)


def test_values_without_a_json_type_are_refused_before_the_schema() -> None:
    # a complex number is a JSON Schema number to jsonschema, which would compare it with 68
    with pytest.raises(SpecError) as info:
        load_spec(
            {
                "instance_id": "i",
                "hostname": "h",
                "fqdn": "other.example",
                "network": {"ethernets": {"e": {"mtu": 1 + 2j}}},
            }
        )
    # no schema or semantic checks on such data (fqdn is not reported)
    assert [str(p) for p in info.value.problems] == ["network.ethernets.e.mtu: a complex is not a YAML/JSON value"]


def test_integer_means_int() -> None:
    for value in (1500.0, True, "1500", 1e3):
        data = {
            "instance_id": "i",
            "hostname": "h",
            "network": {
                "ethernets": {"e": {"mtu": value}},
                "vlans": {"e.5": {"id": value if value is not True else 5.0, "link": "e"}},
            },
        }
        assert [p.path for p in schema_problems(data)] == ["network.ethernets.e.mtu", "network.vlans.e.5.id"]
    route = {"to": "10.9.0.0/16", "via": "10.0.0.1", "metric": 100.0}
    assert [
        p.path
        for p in schema_problems(
            {
                "instance_id": "i",
                "hostname": "h",
                "network": {"ethernets": {"e": {"addresses": ["10.0.0.5/24"], "routes": [route]}}},
            }
        )
    ] == ["network.ethernets.e.routes[0].metric"]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"instance_id": "iid\n"}, "instance_id"),
        ({"user_data_parts": [{"content_type": "text/plain\n", "content": "x"}]}, "user_data_parts[0].content_type"),
        ({"network": {"ethernets": {"e": {"set-name": "eth0\n"}}}}, "network.ethernets.e.set-name"),
        ({"network": {"ethernets": {"eth0\n": {}}}}, "network.ethernets"),
    ],
    ids=["instance_id", "content_type", "set-name", "device-id"],
)
def test_a_pattern_matches_the_whole_value(data: dict[str, Any], path: str) -> None:
    # Python's "$" matches before a final newline: "iid\n" passed "^[A-Za-z0-9][A-Za-z0-9._:-]*$"
    assert [p.path for p in schema_problems({"instance_id": "i", "hostname": "h", **data})] == [path]


def test_schema_patterns_read_dollar_as_the_end_of_the_text() -> None:
    regex = specschema.schema_regex
    assert regex("^a$").search("a") and not regex("^a$").search("a\n")
    assert regex("^[$]+$").search("$$") and not regex("^[$]+$").search("$$\n")
    assert regex(r"^\$$").search("$") and regex("^a|b$").search("a\n")  # "^a" matches; only "$" changed


def test_both_schema_copies_are_identical() -> None:
    root = Path(__file__).parent.parent
    assert (root / "schemas/vmspec.schema.json").read_bytes() == (
        root / "configdrive/schemas/vmspec.schema.json"
    ).read_bytes()


# --- stock jsonschema's verdicts on specs mutated by Hypothesis --------------------------------

BASES = [s for s in map(fixture_spec, [*VALID_SPECS, *INVALID_SPECS]) if isinstance(s, dict)]

# Values that hit every keyword: wrong types, edge lengths, bools posing as numbers, bad names.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=False, width=32),
    st.sampled_from(
        [
            "",
            "x",
            "eth0",
            "bad name!",
            "a" * 300,
            "text/x-shellscript",
            "a/b/c",
            "active-backup",
            "fast",
            "layer2",
            "2001:db8::1/64",
            "default",
            "-x",
            "é",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                ["content", "content_type", "filename", "path", "to", "via", "interfaces", "id", "link", "x", "mode"]
            ),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=6,
)

# Same-type replacements reach the keywords behind a type check (pattern, lengths, enum, bounds).
TWEAKS: dict[type, st.SearchStrategy[Any]] = {
    str: st.sampled_from(
        [
            "",
            "x",
            "eth0",
            "bad name!",
            "a" * 300,
            "text/x-shellscript",
            "a/b",
            "active-backup",
            "slow",
            "layer3+4",
            "balance-zz",
            "-x",
            "é",
            "x" * 16,
        ]
    ),
    int: st.sampled_from([-1, 0, 1, 2, 3, 67, 68, 4094, 4095, 65536, 4294967296]),
    bool: st.booleans(),
    float: st.floats(-10, 5000),
}
ADDED_KEYS = [
    "extra",
    "set-name",
    "mtu",
    "user_data_parts",
    "user_data",
    "vendor_data",
    "meta",
    "id",
    "metric",
    "parameters",
    "mode",
    "lacp-rate",
    "transmit-hash-policy",
    "version",
    "mii-monitor-interval",
    "filename",
    "primary",
    "files",
    "routes",
    "dhcp4",
]


def paths_of(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths_of(value, (*prefix, index))
    return found


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    """A fixture's spec with a few fields tweaked, replaced, removed or added."""
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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_mutated_specs_get_stock_jsonschema_verdicts(data: Any) -> None:
    ours, stock = schema_problems(data), stock_problems(data)
    assert [p.path for p in ours] == [p.path for p in stock]
    for mine, theirs in zip(ours, stock, strict=True):
        assert len(mine.message) < MESSAGE_CHARS
        # same words; a quoted value may be cut ("...") or show a mapping's keys sorted
        assert mine.message == theirs.message or "..." in mine.message or "{" in mine.message
