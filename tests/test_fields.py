"""Request bodies declared once (insights_app.page.fields): the parser and the schema of each field kind agree."""

from __future__ import annotations

from typing import Any

import pytest

from insights_app.errors import ValidationError
from insights_app.methods import build_registry
from insights_app.page.fields import (
    MISSING,
    Array,
    Body,
    Bool,
    ClassRef,
    Defaults,
    Delegated,
    Enum,
    Int,
    ModelScope,
    Nullable,
    Number,
    Object,
    ParseState,
    last_model,
)
from insights_app.page.query import ATTRIBUTE_BODY, PAGE_BODY

jsonschema = pytest.importorskip("jsonschema")

CLASSES = ("cat", "dog", "bird")


def defaults(n_models: int = 2) -> Defaults:
    methods = build_registry()

    def never() -> tuple[int, int]:  # these bodies need no image size (a triage request reads no example)
        raise AssertionError("the image size is read only by a body that needs it")

    return Defaults(methods, "Saliency", CLASSES, never, 3, n_models)


def message(body: Body[Any], value: Any) -> str:
    with pytest.raises(ValidationError) as info:
        body.parse(value, defaults())
    return str(info.value)


def openapi_to_jsonschema(schema: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` as JSON Schema (what the fuzz tests' schemathesis does)."""
    if isinstance(schema, list):
        return [openapi_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: openapi_to_jsonschema(v) for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


KINDS = Body(
    Object(
        {
            "n": Int(1, 5, 2, "a count"),
            "model": Int(0, last_model),
            "x": Number(0, 1, 0.5),
            "flag": Bool(),
            "kind": Enum(("a", "b"), "a"),
            "cls": Nullable(ClassRef()),
            "classes": Array(ClassRef(), "must be a list of classes", max_items=2, build=lambda v, w: tuple(v)),
            "pair": Nullable(
                Array(Number(0, 1), "must be two numbers", min_items=2, max_items=2, items_own_errors=False)
            ),
            "inner": Object({"k": Int(0, 9, required=True)}, nullable=False),
        },
        first=("flag",),
    )
)


def test_each_kind_parses_its_value_and_fills_its_default():
    v = KINDS.parse({"n": 4.0, "cls": "dog", "classes": [2, "cat"], "inner": {"k": 3}}, defaults())
    assert v == {
        "flag": False,
        "n": 4,
        "model": 0,
        "x": 0.5,
        "kind": "a",
        "cls": 1,
        "classes": (2, 0),
        "pair": None,
        "inner": {"k": 3},
    }
    assert KINDS.parse({"model": 1, "inner": {"k": 0}}, defaults())["model"] == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("x", "body: must be a JSON object"),
        ({"nope": 1}, "nope: is not a known field (allowed: n, model, x, flag, kind, cls, classes, pair, inner)"),
        ({"n": 1.5}, "n: must be an integer"),
        ({"n": True}, "n: must be an integer"),
        ({"n": 9}, "n: must be between 1 and 5"),
        ({"model": 2}, "model: must be between 0 and 1"),
        ({"x": float("nan")}, "x: must be a number between 0 and 1"),
        ({"flag": 1}, "flag: must be true or false"),
        ({"kind": "c"}, "kind: must be one of a, b"),
        ({"cls": "fish"}, "cls: unknown class 'fish'"),
        ({"cls": 3}, "cls: must be a class name or an index between 0 and 2"),
        ({"classes": [0, 1, 2]}, "classes: must be a list of classes"),
        ({"classes": ["fish"]}, "classes: unknown class 'fish'"),
        ({"pair": [0.5, 2]}, "pair: must be two numbers"),
        ({"inner": {}}, "inner.k: is required"),
        ({"inner": {"k": 1, "j": 2}}, "inner.j: is not a known field (allowed: k)"),
        ({"n": 9, "flag": "x"}, "flag: must be true or false"),  # ``first`` is checked first
    ],
)
def test_a_bad_value_is_a_400_naming_its_field(body, expected):
    assert message(KINDS, body) == expected


def test_the_schema_refuses_what_the_parser_refuses_and_accepts_what_it_accepts():
    schema = openapi_to_jsonschema(KINDS.schema(ModelScope({}, CLASSES, 2)))
    good = [{"inner": {"k": 1}}, {"cls": None, "pair": [0, 1], "classes": ["dog", 2], "inner": {"k": 9}}]
    bad = [{"n": 0}, {"model": 2}, {"kind": "c"}, {"cls": 3}, {"classes": [0, 1, 2]}, {"pair": [1]}, {"inner": {}}]
    for body in good:
        jsonschema.validate(body, schema)
        KINDS.parse(body, defaults())
    for body in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(dict({"inner": {"k": 1}}, **body), schema)
        with pytest.raises(ValidationError):
            KINDS.parse(dict({"inner": {"k": 1}}, **body), defaults())


def test_nullable_says_it_the_openapi_way_or_with_any_of():
    scope = ModelScope({}, CLASSES, 1)
    assert Nullable(Int(0, 1)).schema(scope) == {"type": "integer", "minimum": 0, "maximum": 1, "nullable": True}
    assert Nullable(ClassRef()).schema(scope)["anyOf"][1] == {"type": "null"}


def test_a_delegated_part_gets_its_keys_values_and_the_fields_parsed_before_it():
    seen: list[Any] = []

    def parse(values: tuple[Any, ...], state: ParseState) -> str:
        seen.append((values, dict(state.values)))
        return "parsed"

    body = Body(
        Object(
            {
                "a": Int(0, 9),
                "both": Delegated(("b", "c"), parse, lambda scope: {"b": {"type": "string"}, "c": {"type": "integer"}}),
            }
        )
    )
    assert body.parse({"a": 3, "c": 1}, defaults()) == {"a": 3, "both": "parsed"}
    assert seen == [((MISSING, 1), {"a": 3})]
    assert set(body.schema(ModelScope({}, CLASSES, 1))["properties"]) == {"a", "b", "c"}
    assert body.object.keys() == ("a", "b", "c")


def test_the_page_and_attribute_bodies_name_their_fields():
    d = Defaults(build_registry(), "Saliency", CLASSES, (8, 8), 3, 2)
    with pytest.raises(ValidationError, match="^filter.pair.actual: is required$"):
        PAGE_BODY.parse({"filter": {"pair": {}}}, d)
    with pytest.raises(ValidationError, match="^example_id: is required$"):
        ATTRIBUTE_BODY.parse({"method": "nope"}, d)
    with pytest.raises(ValidationError, match="^method: unknown method; choose one of "):
        ATTRIBUTE_BODY.parse({"example_id": 0, "method": "nope"}, d)
    schema = PAGE_BODY.schema(ModelScope(d.methods, CLASSES, 2))
    assert schema["properties"]["filter"]["properties"]["model"]["maximum"] == 1
    assert set(schema["properties"]) == set(PAGE_BODY.object.keys())
