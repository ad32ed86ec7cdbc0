"""Shared test data: the fixture specs, parametrized over formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from configdrive.render import FORMATS as REGISTRY

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
VALID_SPECS = sorted((FIXTURES / "specs" / "valid").glob("*.yaml"))
INVALID_SPECS = sorted((FIXTURES / "specs" / "invalid").glob("*.yaml"))
FORMATS = tuple(REGISTRY)


def spec_id(path: Path) -> str:
    return path.stem


@pytest.fixture(params=VALID_SPECS, ids=spec_id)
def valid_spec_path(request: pytest.FixtureRequest) -> Path:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


def takes_network_updates(fmt: str) -> bool:
    """Whether format ``fmt`` can carry the ``updates`` policy (a format may refuse it)."""
    from configdrive import FormatError, build_seed

    try:
        build_seed(example_with(updates={"network": {"when": ["boot"]}}), fmt)
    except FormatError:
        return False
    return True


def example_with(**changes: Any) -> dict[str, Any]:
    """The example spec as data, with top-level fields replaced (``None`` removes one)."""
    spec = yaml.safe_load((FIXTURES / "specs/valid/example.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec  # type: ignore[no-any-return]
