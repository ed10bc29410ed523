"""Request bodies declared once: each field kind parses its value and describes it in OpenAPI.

A view declares its body as a :class:`Body` of named fields (an integer with bounds, one of
some names, true or false, a number range, a class by name or index, a nested object, an
array, or a part delegated to a parser and schema of its own such as the quality metrics'
options). The same declaration checks a request, raising a
:class:`~insights_app.errors.ValidationError` that names the field (the server's 400), and
writes the body's schema for ``/api/v1/openapi.json``, so the two cannot drift apart.

Bounds that depend on the visualizer (its classes, methods, number of models) are functions of
a :class:`Scope`; a parse also sees the :class:`Defaults` that fill what a request leaves out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ..errors import ValidationError
from ..methods import MethodSpec
from ..metrics.registered import metric_registry
from ..metrics.spec import MetricSpec

T = TypeVar("T")
JSONSchema = dict[str, Any]


class _Missing:
    """The marker of a key the body does not have (an explicit null is a value, often refused)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Scope(Protocol):
    """What a body's bounds and schema depend on: the visualizer's methods, metrics, classes and models."""

    @property
    def methods(self) -> Mapping[str, MethodSpec]: ...

    @property
    def metrics(self) -> Mapping[str, MetricSpec]: ...

    @property
    def classes(self) -> Sequence[str]: ...

    @property
    def n_models(self) -> int: ...


class Described(Protocol):
    """What the OpenAPI document reads of a visualizer to build a body's schema."""

    @property
    def methods(self) -> Mapping[str, MethodSpec]: ...

    @property
    def metrics(self) -> Mapping[str, MetricSpec]: ...

    @property
    def classes(self) -> Sequence[str]: ...

    @property
    def engines(self) -> Sequence[object]: ...


@dataclass(frozen=True)
class ModelScope:
    """A :class:`Scope` read off a visualizer (schemas need no image size, so none is read)."""

    methods: Mapping[str, MethodSpec]
    classes: Sequence[str]
    n_models: int
    metrics: Mapping[str, MetricSpec] = field(default_factory=metric_registry)

    @classmethod
    def of(cls, vis: Described) -> ModelScope:
        return cls(vis.methods, vis.classes, len(vis.engines), vis.metrics)


@dataclass(frozen=True)
class Defaults:
    """What a request leaves out is filled from the visualizer: its methods and defaults.

    ``size`` is the dataset's image size, or how to read it: read only by a body that needs it
    (a method's cost), so that a triage request does not wait for the dataset's first example.
    """

    methods: Mapping[str, MethodSpec]
    method: str
    classes: Sequence[str]
    size: tuple[int, int] | Callable[[], tuple[int, int]]
    top_k: int
    n_models: int
    metrics: Mapping[str, MetricSpec] = field(default_factory=metric_registry)

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.size() if callable(self.size) else self.size


@dataclass
class ParseState:
    """One body's parse: the defaults, and the body's fields parsed so far (later fields may
    depend on earlier ones: a method's arguments on the method)."""

    defaults: Defaults
    values: dict[str, Any] = field(default_factory=dict)


Bound = int | Callable[[Scope], int]


def _bound(b: Bound, scope: Scope) -> int:
    return b(scope) if callable(b) else b


def last_model(scope: Scope) -> int:
    """The highest model index (a bound of the ``model`` fields)."""
    return max(0, scope.n_models - 1)


def _described(schema: JSONSchema, description: str) -> JSONSchema:
    if description:
        schema["description"] = description
    return schema


class Field(Generic[T]):
    """One field's kind: how its JSON value is checked and turned into ``T``, and its schema."""

    description: str = ""
    required: bool = False

    def parse(self, value: Any, where: str, state: ParseState) -> T:
        """``value`` is the JSON value, or :data:`MISSING`; ``where`` is the field's dotted name."""
        raise NotImplementedError

    def schema(self, scope: Scope) -> JSONSchema:
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Field[int]):
    """An integer (a float with no fraction is one) between two bounds, both included."""

    lo: Bound
    hi: Bound
    default: int | Callable[[Defaults], int] = 0
    description: str = ""
    required: bool = False
    at_most: str = ""  # an earlier field of the same body whose value bounds this one too

    def parse(self, value: Any, where: str, state: ParseState) -> int:
        if value is MISSING:
            value = self.default(state.defaults) if callable(self.default) else self.default
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()))
        ):
            raise ValidationError(where, "must be an integer")
        value = int(value)
        lo, hi = _bound(self.lo, state.defaults), _bound(self.hi, state.defaults)
        if self.at_most:
            hi = min(hi, state.values[self.at_most])
        if not lo <= value <= hi:
            raise ValidationError(where, f"must be between {lo} and {hi}")
        return value

    def schema(self, scope: Scope) -> JSONSchema:
        s = {"type": "integer", "minimum": _bound(self.lo, scope), "maximum": _bound(self.hi, scope)}
        return _described(s, self.description)


@dataclass(frozen=True)
class Number(Field[float]):
    """A number between two bounds (no NaN: the range test refuses it, without overflowing on huge integers)."""

    lo: float
    hi: float
    default: float = 0.0
    description: str = ""

    def parse(self, value: Any, where: str, state: ParseState) -> float:
        if value is MISSING:
            value = self.default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.lo <= value <= self.hi:
            raise ValidationError(where, f"must be a number between {self.lo:g} and {self.hi:g}")
        return float(value)

    def schema(self, scope: Scope) -> JSONSchema:
        return _described({"type": "number", "minimum": self.lo, "maximum": self.hi}, self.description)


@dataclass(frozen=True)
class Bool(Field[bool]):
    default: bool = False
    description: str = ""

    def parse(self, value: Any, where: str, state: ParseState) -> bool:
        if value is MISSING:
            return self.default
        if not isinstance(value, bool):
            raise ValidationError(where, "must be true or false")
        return value

    def schema(self, scope: Scope) -> JSONSchema:
        return _described({"type": "boolean"}, self.description)


@dataclass(frozen=True)
class Enum(Field[str]):
    """One of some names; ``default`` None: the field may be left out, and parses to None then."""

    choices: Sequence[str]
    default: str | None = None
    description: str = ""

    def parse(self, value: Any, where: str, state: ParseState) -> Any:
        if value is MISSING:
            if self.default is None:
                return None
            value = self.default
        if not isinstance(value, str) or value not in self.choices:
            raise ValidationError(where, f"must be one of {', '.join(self.choices)}")
        return value

    def schema(self, scope: Scope) -> JSONSchema:
        return _described({"type": "string", "enum": list(self.choices)}, self.description)


@dataclass(frozen=True)
class Name(Field[str]):
    """A string whose allowed values depend on the visualizer (a method's name); ``check`` False
    leaves the check of the value to the code that uses it (it names the choices itself)."""

    choices: Callable[[Scope], Sequence[str]]
    default: Callable[[Defaults], str] | None = None
    message: str = "must be one of {choices}"
    check: bool = True

    def parse(self, value: Any, where: str, state: ParseState) -> Any:
        if value is MISSING and self.default is not None:
            value = self.default(state.defaults)
        choices = self.choices(state.defaults)
        if not isinstance(value, str) or (self.check and value not in choices):
            raise ValidationError(where, self.message.format(choices=", ".join(choices)))
        return value

    def schema(self, scope: Scope) -> JSONSchema:
        return {"type": "string", "enum": list(self.choices(scope))}


def class_schema(scope: Scope) -> JSONSchema:
    """A class, by name or by index."""
    return {
        "anyOf": [
            {"type": "string", "enum": list(scope.classes)},
            {"type": "integer", "minimum": 0, "maximum": len(scope.classes) - 1},
        ]
    }


def class_index(value: Any, classes: Sequence[str], where: str) -> int:
    """A class given as an index or as its name -> its index."""
    if isinstance(value, str):
        try:
            return list(classes).index(value)
        except ValueError:
            raise ValidationError(where, f"unknown class {value[:80]!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(classes):
        raise ValidationError(where, f"must be a class name or an index between 0 and {len(classes) - 1}")
    return value


@dataclass(frozen=True)
class ClassRef(Field[int]):
    """A class by name or by index -> its index."""

    description: str = ""
    required: bool = False

    def parse(self, value: Any, where: str, state: ParseState) -> int:
        return class_index(value, state.defaults.classes, where)

    def schema(self, scope: Scope) -> JSONSchema:
        return _described(class_schema(scope), self.description)


@dataclass(frozen=True)
class Nullable(Field[Any]):
    """``inner`` or null; left out or null parses to None."""

    inner: Field[Any]
    description: str = ""

    def parse(self, value: Any, where: str, state: ParseState) -> Any:
        if value is MISSING or value is None:
            return None
        return self.inner.parse(value, where, state)

    def schema(self, scope: Scope) -> JSONSchema:
        inner = self.inner.schema(scope)
        if "type" in inner:  # OpenAPI 3.0's way; a schema without a type says it with anyOf
            s = dict(inner, nullable=True)
        else:
            s = {"anyOf": [inner, {"type": "null"}]}
        return _described(s, self.description)


@dataclass(frozen=True)
class Array(Field[Any]):
    """A list of ``items`` (each parsed by it), of bounded length; ``message`` is the error of a
    value that is no list, or of the wrong length; ``build`` makes the parsed list a value."""

    items: Field[Any]
    message: str
    min_items: int = 0
    max_items: Bound | None = None
    default: Callable[[], Any] = list  # what a body that leaves it out gets (None: it stays None)
    build: Callable[[list[Any], str], Any] | None = None
    items_own_errors: bool = True  # False: a bad item is reported with ``message`` too
    description: str = ""

    def parse(self, value: Any, where: str, state: ParseState) -> Any:
        if value is MISSING:
            value = self.default()
            if value is None:
                return None
        hi = None if self.max_items is None else _bound(self.max_items, state.defaults)
        if not isinstance(value, list) or len(value) < self.min_items or (hi is not None and len(value) > hi):
            raise ValidationError(where, self.message)
        try:
            parsed = [self.items.parse(v, where, state) for v in value]
        except ValidationError:
            if self.items_own_errors:
                raise
            raise ValidationError(where, self.message) from None
        return self.build(parsed, where) if self.build is not None else parsed

    def schema(self, scope: Scope) -> JSONSchema:
        s: JSONSchema = {"type": "array"}
        if self.min_items:
            s["minItems"] = self.min_items
        if self.max_items is not None:
            s["maxItems"] = _bound(self.max_items, scope)
        s["items"] = self.items.schema(scope)
        return _described(s, self.description)


@dataclass(frozen=True)
class Delegated(Field[Any]):
    """Keys with a parser and a schema of their own (the metrics options, a method's arguments).

    ``parse`` gets the values of ``keys`` (:data:`MISSING` for those left out) and the state;
    ``schema`` gives the schema of each key. The body's parsed value is stored under its first key.
    """

    keys: tuple[str, ...]
    parse_values: Callable[[tuple[Any, ...], ParseState], Any]
    schemas: Callable[[Scope], Mapping[str, JSONSchema]]

    def parse(self, value: Any, where: str, state: ParseState) -> Any:
        return self.parse_values(value if isinstance(value, tuple) else (value,), state)

    def schema(self, scope: Scope) -> JSONSchema:
        return dict(self.schemas(scope))


@dataclass(frozen=True)
class Object(Field[T]):
    """A JSON object of named fields (unknown keys refused, required ones checked first), which
    ``build`` turns into a value; without ``build``, the dictionary of parsed fields.

    Left out or null, it parses as an empty object. ``message`` replaces "must be a JSON object".
    The fields are listed (in the schema and the unknown-field message) in declaration order, and
    checked in that order too, but for those named in ``first``, which are checked first (a
    field that depends on another comes after it).
    """

    fields: Mapping[str, Field[Any]]
    build: Callable[[dict[str, Any], ParseState], T] | None = None
    nullable: bool = True
    message: str = "must be a JSON object"
    description: str = ""
    first: tuple[str, ...] = ()

    def keys(self) -> tuple[str, ...]:
        """Every key the object takes (a delegated field brings several)."""
        out: list[str] = []
        for name, f in self.fields.items():
            out.extend(f.keys if isinstance(f, Delegated) else (name,))
        return tuple(out)

    def parse(self, value: Any, where: str, state: ParseState) -> T:
        return self.parse_into(value, where, f"{where}." if where else "", state, {})

    def parse_into(self, value: Any, where: str, prefix: str, state: ParseState, values: dict[str, Any]) -> T:
        """Parse into ``values`` (a body keeps its parsed fields in its state, for later fields to read)."""
        if value is MISSING or value is None:
            value = {}
        if not isinstance(value, dict):
            raise ValidationError(where or "body", self.message)
        allowed = self.keys()
        for key in value:
            if key not in allowed:
                raise ValidationError(f"{prefix}{key}", f"is not a known field (allowed: {', '.join(allowed)})")
        for name, f in self.fields.items():
            if f.required and name not in value:
                raise ValidationError(f"{prefix}{name}", "is required")
        for name in self.first + tuple(n for n in self.fields if n not in self.first):
            f = self.fields[name]
            if isinstance(f, Delegated):
                values[name] = f.parse(tuple(value.get(k, MISSING) for k in f.keys), prefix + name, state)
            else:
                values[name] = f.parse(value.get(name, MISSING), prefix + name, state)
        return self.build(values, state) if self.build is not None else values  # type: ignore[return-value]

    def schema(self, scope: Scope) -> JSONSchema:
        props: JSONSchema = {}
        for name, f in self.fields.items():
            if isinstance(f, Delegated):
                props.update(f.schema(scope))
            else:
                props[name] = f.schema(scope)
        s: JSONSchema = {"type": "object"}
        if self.nullable:
            s["nullable"] = True
        s["additionalProperties"] = False
        required = [name for name, f in self.fields.items() if f.required]
        if required:
            s["required"] = required
        s["properties"] = props
        return _described(s, self.description)


@dataclass(frozen=True)
class Body(Generic[T]):
    """A request body: its fields (in the order they are checked) and what they build."""

    object: Object[T]

    def parse(self, body: Any, defaults: Defaults) -> T:
        """The typed query of ``body``, or a ValidationError naming its first bad field."""
        state = ParseState(defaults)
        return self.object.parse_into(body, "", "", state, state.values)

    def schema(self, scope: Scope) -> JSONSchema:
        return self.object.schema(scope)

    def openapi(self, vis: Described) -> JSONSchema:
        """The body's schema for a visualizer (a :class:`~insights_app.views.View`'s ``request_schema``)."""
        return self.schema(ModelScope.of(vis))
