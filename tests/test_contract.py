"""The tool contract: the compiled fast path agrees with jsonschema (the reference) on every verdict."""

from __future__ import annotations

import json

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from evogit.contract import _Checker, _portable

from .conftest import STARTER

SCHEMAS = [json.loads((d / "tool.json").read_text())[key] for d in sorted(STARTER.iterdir())
           for key in ("input_schema", "output_schema")]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


def _near(schema: dict) -> st.SearchStrategy:
    """Objects shaped like the schema's (its property names, random values) and anything else."""
    names = list(schema.get("properties", {})) or ["x"]
    return st.dictionaries(st.sampled_from(names), json_values, max_size=len(names)) | json_values


def test_starter_schemas_take_the_fast_path():
    assert sum(_portable(s) for s in SCHEMAS) >= len(SCHEMAS) - 2


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fast_path_agrees_with_jsonschema(data):
    schema = data.draw(st.sampled_from(SCHEMAS))
    value = data.draw(_near(schema))
    checker = _Checker(schema)
    reference = jsonschema.Draft202012Validator(schema).is_valid(value)
    assert (checker.problem(value) is None) == reference


def test_unportable_schemas_fall_back():
    assert not _portable({"type": "string", "format": "email"})
    assert not _portable({"type": "array", "items": [{"type": "string"}]})
    assert not _portable({"$ref": "#/$defs/x"})
    checker = _Checker({"type": "array", "prefixItems": [{"type": "string"}]})
    assert checker.fast is None and checker.problem([1]) is not None and checker.problem(["a"]) is None
    # Defaults are never written into the value being checked.
    value: dict = {}
    _Checker({"type": "object", "properties": {"a": {"type": "integer", "default": 1}}}).problem(value)
    assert value == {}
