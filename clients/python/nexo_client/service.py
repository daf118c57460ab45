"""Plain typed Python functions as a JSON-RPC 2.0 service over HTTP, with an
OpenRPC document, for nexo's HTTP upstreams (`nexo worker --upstream URL`).

    from typing import Annotated, TypedDict
    from nexo_client.service import Example, Schema, Service

    class Greeting(TypedDict):
        greeting: str

    svc = Service("greet-py")

    @svc.method("greet.py", summary="greets a name of 1 to 64 characters", idempotent=True,
                examples=[({"name": "Ann"}, {"greeting": "Hello, Ann!"}),
                          Example({"name": ""}, error="BAD_PAYLOAD")])
    def greet(name: Annotated[str, Schema(min_length=1, max_length=64, description="who to greet")]) -> Greeting:
        return {"greeting": f"Hello, {name}!"}

    svc.serve("127.0.0.1:8000", path="/rpc")   # blocks; SIGTERM or SIGINT stops it cleanly

The contract:

- Type hints are the schema. Parameters and the return value may be str,
  int, float, bool, None, list[T], dict[str, T], Optional[T] (or T | None),
  Literal[...], a TypedDict, or Annotated[T, Schema(...)] to add
  constraints. Anything else is a TypeError when the function is decorated,
  naming the function and the parameter.
- `rpc.discover` answers an OpenRPC 1.3.2 document built from them, shaped
  like nexo's own: params by name, `x-idempotent` (nexo retries only
  idempotent methods), examples as example pairings.
- Params are checked before the function runs, by name (an object) or by
  position (an array, in parameter order). Params that do not fit are
  answered -32602 with a message naming the field, e.g.
  `name: must be at least 1 character`. An int is exact at any size, and
  never a bool or a float.
- `raise RPCError(code, message, data)` answers that code and message
  unchanged. Use codes 1000 to 65535 for your own errors: nexo keeps them
  exactly on every door. Any other exception is answered -32603 "internal
  error"; its traceback goes to the log (stderr), never to the caller.
- nexo sends each call's deadline in the header `Nexo-Deadline` (Unix
  milliseconds). A call whose deadline has passed when it arrives is not
  run: it is answered -32010 "the deadline passed" (-32000 minus nexo's
  TIMEOUT code, 10). A function may read its deadline with `deadline()`.
- HTTP: POST with Content-Type application/json and a Content-Length, on
  one path. Answers are 200 with a JSON body, or 204 when the body held
  only notifications. A body over `max_body` (1 MiB) gets 413 with a
  JSON-RPC error -32602. Connections are kept alive (HTTP/1.1), one thread
  each, at most 256 (past them, calls are answered -32008, nexo's BUSY).
  While stopping, calls are answered -32009 (SHUTTING_DOWN).
- Logging is one line at start, and one entry per internal error;
  http.server's per-request lines are left out.

Standard library only.
"""
from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import http.server
import inspect
import json
import math
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
import types
import typing
from typing import Annotated, Any, Callable, Iterable, Iterator, Literal, Mapping, TextIO, Union
from urllib.parse import urlsplit

__all__ = ["Service", "Schema", "Example", "RPCError", "Server", "deadline", "APP_CODES", "MAX_BODY", "MAX_BATCH"]

#: The default bound of a request body, in bytes.
MAX_BODY = 1 << 20
#: The most calls one batch may hold, as on nexo's own doors.
MAX_BATCH = 1000
#: The error codes for a service's own errors: nexo keeps them exactly on every door.
APP_CODES = range(1000, 65536)

# JSON-RPC 2.0 error codes, and nexo's: -32000 minus a native code.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
BUSY = -32008  # nexo's BUSY (8)
SHUTTING_DOWN = -32009  # nexo's SHUTTING_DOWN (9)
TIMEOUT = -32010  # nexo's TIMEOUT (10)

DEADLINE_HEADER = "Nexo-Deadline"
DISCOVER = "rpc.discover"
OPENRPC_VERSION = "1.3.2"

_SUPPORTED = ("use str, int, float, bool, None, list[T], dict[str, T], Optional[T], Literal[...], "
              "a TypedDict or Annotated[T, Schema(...)]")
_UNION_TYPES = tuple(t for t in (Union, getattr(types, "UnionType", None)) if t is not None)
_REQUIRED_WRAPPERS = tuple(t for t in (getattr(typing, "Required", None), getattr(typing, "NotRequired", None)) if t)
_DISCARD = 4 << 20  # a refused body up to this size past max_body is read and dropped, keeping the connection
_SPARE = 32  # threads that answer BUSY to connections past max_connections
_ABSENT = object()


class _Refusal(typing.NamedTuple):
    """How calls are answered instead of run: busy or shutting down."""

    code: int
    message: str
    name: str


_SHUTTING_DOWN = _Refusal(SHUTTING_DOWN, "shutting down", "SHUTTING_DOWN")

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("nexo_deadline", default=None)


def deadline() -> float | None:
    """The deadline of the call being run, as Unix time in seconds (compare
    with time.time()), or None when the caller sent none. Outside a call,
    None."""
    return _deadline.get()


class RPCError(Exception):
    """Raise it from a method to answer a JSON-RPC error with this code,
    message and optional data (any JSON value), sent unchanged. Use codes in
    APP_CODES (1000 to 65535) for the service's own errors; list them in the
    method's `errors` so they are documented (and, when data is None, the
    answer then carries {"name": NAME}, as nexo's errors do)."""

    def __init__(self, code: int, message: str, data: Any = None):
        if type(code) is not int:
            raise TypeError(f"RPCError code must be an int, not {type(code).__name__}")
        if not isinstance(message, str):
            raise TypeError(f"RPCError message must be a str, not {type(message).__name__}")
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.data = data


@dataclasses.dataclass(frozen=True)
class Schema:
    """Constraints on a type, used as Annotated[T, Schema(...)]:
    min_length and max_length (characters of a str, items of a list),
    pattern (a str; a regular expression searched anywhere in the value, as
    JSON Schema does; write ^...$ to match all of it), minimum and maximum
    (inclusive, of an int or float) and a description."""

    min_length: int | None = None
    max_length: int | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    pattern: str | None = None
    description: str | None = None

    def __post_init__(self):
        for key in ("min_length", "max_length"):
            v = getattr(self, key)
            if v is not None and (type(v) is not int or v < 0):
                raise ValueError(f"Schema({key}={v!r}): want an int of 0 or more")
        for key in ("minimum", "maximum"):
            v = getattr(self, key)
            if v is not None and (type(v) not in (int, float) or not math.isfinite(v)):
                raise ValueError(f"Schema({key}={v!r}): want a finite int or float")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ValueError(f"Schema: min_length {self.min_length} is over max_length {self.max_length}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"Schema: minimum {self.minimum} is over maximum {self.maximum}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except (re.error, TypeError) as e:
                raise ValueError(f"Schema(pattern={self.pattern!r}): {e}") from None
        if self.description is not None and not isinstance(self.description, str):
            raise ValueError("Schema(description=...): want a str")


@dataclasses.dataclass(frozen=True)
class Example:
    """An example call for the document: params (an object or an array) and
    either the result or the name of the error it fails with
    (`Example({"name": ""}, error="BAD_PAYLOAD")`). A plain tuple
    (params, result) is a result example."""

    params: Any
    result: Any = None
    error: str | None = None
    name: str | None = None


# ---- types and their schemas ------------------------------------------------


class _Invalid(Exception):
    """A value does not fit its type; path names where."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)


def _show(v: Any) -> str:
    """A value, short, as JSON, for error messages."""
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "an array"
    try:
        text = json.dumps(v, ensure_ascii=False)
    except ValueError:  # an int past the digits limit
        text = "a very long number"
    except TypeError:  # not JSON at all: a result gone wrong
        text = repr(v)
    return _clip(text, 40)


def _clip(text: str, n: int = 80) -> str:
    """text, cut to n characters."""
    return text if len(text) <= n else text[:n - 3] + "..."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Node:
    """One type: its JSON Schema, and a check of decoded JSON against it."""

    noun = "a value"
    description: str | None = None

    def is_type(self, v: Any) -> bool:
        raise NotImplementedError

    def fit(self, v: Any, path: str) -> Any:
        """The value's constraints, once is_type holds; returns what the
        function gets."""
        return v

    def check(self, v: Any, path: str) -> Any:
        if not self.is_type(v):
            raise _Invalid(path, f"want {self.noun}, got {_show(v)}")
        return self.fit(v, path)

    def own_schema(self) -> dict:
        raise NotImplementedError

    def schema(self) -> dict:
        s = self.own_schema()
        if self.description is not None:
            s["description"] = self.description
        return s

    def constrain(self, spec: Schema, where: str) -> None:
        for key in ("min_length", "max_length", "minimum", "maximum", "pattern"):
            if getattr(spec, key) is not None and not self.takes(key):
                raise TypeError(f"{where}: Schema({key}=...) does not apply to {self.noun}")
        self.apply(spec)
        if spec.description is not None:
            self.description = spec.description

    def takes(self, key: str) -> bool:
        return False

    def apply(self, spec: Schema) -> None:
        pass


class _Str(_Node):
    noun = "a string"

    def __init__(self):
        self.min_length = self.max_length = self.pattern = None

    def is_type(self, v):
        return type(v) is str

    def takes(self, key):
        return key in ("min_length", "max_length", "pattern")

    def apply(self, spec):
        if spec.min_length is not None:
            self.min_length = spec.min_length
        if spec.max_length is not None:
            self.max_length = spec.max_length
        if spec.pattern is not None:
            self.pattern = re.compile(spec.pattern)

    def fit(self, v, path):
        if self.min_length is not None and len(v) < self.min_length:
            raise _Invalid(path, f"must be at least {_plural(self.min_length, 'character')}")
        if self.max_length is not None and len(v) > self.max_length:
            raise _Invalid(path, f"must be at most {_plural(self.max_length, 'character')}")
        if self.pattern is not None and not self.pattern.search(v):
            raise _Invalid(path, f"must match the pattern {self.pattern.pattern}")
        return v

    def own_schema(self):
        s: dict = {"type": "string"}
        if self.min_length is not None:
            s["minLength"] = self.min_length
        if self.max_length is not None:
            s["maxLength"] = self.max_length
        if self.pattern is not None:
            s["pattern"] = self.pattern.pattern
        return s


class _Number(_Node):
    def __init__(self):
        self.minimum = self.maximum = None

    def takes(self, key):
        return key in ("minimum", "maximum")

    def apply(self, spec):
        if spec.minimum is not None:
            self.minimum = spec.minimum
        if spec.maximum is not None:
            self.maximum = spec.maximum

    def fit(self, v, path):
        if self.minimum is not None and v < self.minimum:
            raise _Invalid(path, f"must be at least {self.minimum}")
        if self.maximum is not None and v > self.maximum:
            raise _Invalid(path, f"must be at most {self.maximum}")
        return v

    def own_schema(self):
        s: dict = {"type": self.json_type}
        if self.minimum is not None:
            s["minimum"] = self.minimum
        if self.maximum is not None:
            s["maximum"] = self.maximum
        return s


class _Int(_Number):
    noun = "an integer"
    json_type = "integer"

    def is_type(self, v):
        return type(v) is int  # not bool, not 1.0


class _Float(_Number):
    noun = "a number"
    json_type = "number"

    def is_type(self, v):
        return type(v) in (int, float)

    def fit(self, v, path):
        try:
            f = float(v)
        except OverflowError:
            f = math.inf
        if not math.isfinite(f):
            raise _Invalid(path, "must be within the range of a 64-bit float")
        return super().fit(f, path)


class _Bool(_Node):
    noun = "a boolean"

    def is_type(self, v):
        return type(v) is bool

    def own_schema(self):
        return {"type": "boolean"}


class _Null(_Node):
    noun = "null"

    def is_type(self, v):
        return v is None

    def own_schema(self):
        return {"type": "null"}


class _List(_Node):
    noun = "an array"

    def __init__(self, item: _Node):
        self.item = item
        self.min_items = self.max_items = None

    def is_type(self, v):
        return type(v) is list

    def takes(self, key):
        return key in ("min_length", "max_length")

    def apply(self, spec):
        if spec.min_length is not None:
            self.min_items = spec.min_length
        if spec.max_length is not None:
            self.max_items = spec.max_length

    def fit(self, v, path):
        if self.min_items is not None and len(v) < self.min_items:
            raise _Invalid(path, f"must have at least {_plural(self.min_items, 'item')}")
        if self.max_items is not None and len(v) > self.max_items:
            raise _Invalid(path, f"must have at most {_plural(self.max_items, 'item')}")
        return [self.item.check(x, f"{path}[{i}]") for i, x in enumerate(v)]

    def own_schema(self):
        s = {"type": "array", "items": self.item.schema()}
        if self.min_items is not None:
            s["minItems"] = self.min_items
        if self.max_items is not None:
            s["maxItems"] = self.max_items
        return s


def _field(path: str, key: str) -> str:
    """The path of an object's member, as in name.first or tags["a b"]."""
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{_show(key)}]"


class _Dict(_Node):
    noun = "an object"

    def __init__(self, value: _Node):
        self.value = value

    def is_type(self, v):
        return type(v) is dict

    def fit(self, v, path):
        return {k: self.value.check(x, _field(path, k)) for k, x in v.items()}

    def own_schema(self):
        return {"type": "object", "additionalProperties": self.value.schema()}


class _Optional(_Node):
    def __init__(self, inner: _Node):
        self.inner = inner
        self.noun = f"{inner.noun} or null"

    def is_type(self, v):
        return v is None or self.inner.is_type(v)

    def fit(self, v, path):
        return None if v is None else self.inner.fit(v, path)

    def takes(self, key):
        return self.inner.takes(key)

    def apply(self, spec):
        self.inner.apply(spec)

    def own_schema(self):
        return {"anyOf": [self.inner.schema(), {"type": "null"}]}


def _json_type(v: Any) -> str:
    return {bool: "boolean", int: "integer", str: "string", type(None): "null"}[type(v)]


class _Literal(_Node):
    def __init__(self, values: tuple):
        self.values = values
        self.noun = "one of " + ", ".join(_show(x) for x in values)

    def is_type(self, v):
        return any(type(v) is type(x) and v == x for x in self.values)  # True is not 1

    def own_schema(self):
        s: dict = {}
        kinds = {_json_type(x) for x in self.values}
        if len(kinds) == 1:
            s["type"] = kinds.pop()
        s["enum"] = list(self.values)
        return s


class _Object(_Node):
    """A TypedDict: known fields only."""

    noun = "an object"

    def __init__(self, fields: dict[str, tuple[_Node, bool]]):
        self.fields = fields

    def is_type(self, v):
        return type(v) is dict

    def fit(self, v, path):
        for k in v:
            if k not in self.fields:
                raise _Invalid(path, f"unknown field {_show(k)}")
        out = {}
        for k, (node, required) in self.fields.items():
            if k in v:
                out[k] = node.check(v[k], _field(path, k))
            elif required:
                raise _Invalid(path, f"missing field {_show(k)}")
        return out

    def own_schema(self):
        return {"type": "object", "properties": {k: n.schema() for k, (n, _) in self.fields.items()},
                "required": [k for k, (_, req) in self.fields.items() if req], "additionalProperties": False}


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def _is_typeddict(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, dict) and hasattr(hint, "__required_keys__")


def _node(hint: Any, where: str, seen: tuple = ()) -> _Node:
    """The node of a type hint; where names it in errors."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        node = _node(args[0], where, seen)
        for meta in args[1:]:
            if isinstance(meta, Schema):  # other metadata belongs to other tools
                node.constrain(meta, where)
        return node
    if hint is str:
        return _Str()
    if hint is bool:
        return _Bool()
    if hint is int:
        return _Int()
    if hint is float:
        return _Float()
    if hint is None or hint is type(None):
        return _Null()
    if origin is list and len(args) == 1:
        return _List(_node(args[0], where, seen))
    if origin is dict and len(args) == 2:
        if args[0] is not str:
            raise TypeError(f"{where}: {_type_name(hint)}: JSON object keys are strings; use dict[str, T]")
        return _Dict(_node(args[1], where, seen))
    if hint in (list, dict) or origin in (list, dict):
        raise TypeError(f"{where}: {_type_name(hint)} needs its item types: list[int], dict[str, float], ...")
    if origin in _UNION_TYPES:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return _Optional(_node(rest[0], where, seen))
        raise TypeError(f"{where}: unsupported type hint {_type_name(hint)}: of unions only Optional[T] (T | None) "
                        f"is supported")
    if origin is Literal:
        if not all(type(a) in (str, int, bool, type(None)) for a in args):
            raise TypeError(f"{where}: {_type_name(hint)}: Literal values must be str, int, bool or None")
        return _Literal(args)
    if _is_typeddict(hint):
        if hint in seen:
            raise TypeError(f"{where}: {hint.__qualname__} refers to itself; recursive types are not supported")
        try:
            hints = typing.get_type_hints(hint, include_extras=True)
        except Exception as e:  # an annotation that does not resolve
            raise TypeError(f"{where}: {hint.__qualname__}: {e}") from None
        fields = {}
        for key, h in hints.items():
            while typing.get_origin(h) in _REQUIRED_WRAPPERS:
                h = typing.get_args(h)[0]
            fields[key] = (_node(h, f"{where}, field {key!r}", seen + (hint,)), key in hint.__required_keys__)
        return _Object(fields)
    raise TypeError(f"{where}: unsupported type hint {_type_name(hint)}; {_SUPPORTED}")


# ---- methods ----------------------------------------------------------------


@dataclasses.dataclass
class _Param:
    name: str
    node: _Node
    required: bool


@dataclasses.dataclass
class _Method:
    name: str
    fn: Callable[..., Any]
    params: list[_Param]
    result: _Node
    summary: str | None
    idempotent: bool
    errors: dict[int, str]
    examples: list[Example]

    def bind(self, params: Any) -> dict:
        """The function's keyword arguments from JSON-RPC params (absent,
        an object or an array), checked against their types."""
        if params is _ABSENT:
            params = {}
        if isinstance(params, list):
            if len(params) > len(self.params):
                raise _Invalid("", f"too many params: want at most {len(self.params)}, got {len(params)}")
            given = {p.name: v for p, v in zip(self.params, params)}
        else:
            names = {p.name for p in self.params}
            for key in params:
                if key not in names:
                    raise _Invalid("", f"unknown param {_show(key)}")
            given = params
        kwargs = {}
        for p in self.params:
            if p.name in given:
                kwargs[p.name] = p.node.check(given[p.name], p.name)
            elif p.required:
                raise _Invalid("", f"missing param {_show(p.name)}")
        return kwargs

    def describe(self) -> dict:
        """The method as an OpenRPC method object."""
        m: dict = {"name": self.name}
        if self.summary:
            m["summary"] = self.summary
        m["paramStructure"] = "by-name"
        m["params"] = []
        for p in self.params:
            d: dict = {"name": p.name}
            if p.required:
                d["required"] = True
            d["schema"] = p.node.schema()
            m["params"].append(d)
        m["result"] = {"name": "result", "schema": self.result.schema()}
        m["errors"] = [{"code": c, "message": n, "data": {"name": n}} for c, n in self.errors.items()]
        m["errors"].append({"code": INVALID_PARAMS, "message": "BAD_PAYLOAD", "data": {"name": "BAD_PAYLOAD"}})
        if self.examples:
            m["examples"] = [self._pairing(i, ex) for i, ex in enumerate(self.examples)]
        m["x-idempotent"] = self.idempotent
        m["x-encoding"] = "json"
        return m

    def _pairing(self, i: int, ex: Example) -> dict:
        if isinstance(ex.params, list):
            values = [{"name": p.name, "value": v} for p, v in zip(self.params, ex.params)]
        else:
            values = [{"name": p.name, "value": ex.params[p.name]} for p in self.params if p.name in ex.params]
        pair: dict = {"name": ex.name or f"example {i + 1}"}
        if ex.error is not None:
            pair["description"] = f"fails with {ex.error}"
        pair["params"] = values
        if ex.error is None:
            pair["result"] = {"name": "result", "value": ex.result}
        return pair


def _check_example(m: _Method, i: int, ex: Any) -> Example:
    """An example as an Example, checked against the method's types."""
    where = f"{m.name}: example {i + 1}"
    if isinstance(ex, tuple) and len(ex) == 2:
        ex = Example(ex[0], ex[1])
    if not isinstance(ex, Example):
        raise TypeError(f"{where}: want (params, result) or Example(params, result=..., error=...), got {ex!r}")
    try:
        json.dumps(ex.params, allow_nan=False)
        json.dumps(ex.result, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: not JSON: {e}") from None
    if not isinstance(ex.params, (dict, list)):
        raise ValueError(f"{where}: params must be a dict or a list, got {type(ex.params).__name__}")
    try:
        m.bind(ex.params)
        bad_params = None
    except _Invalid as e:
        bad_params = str(e)
    if ex.error is None:
        hint = ""
        if isinstance(ex.result, str) and re.fullmatch(r"[A-Z][A-Z0-9_]*", ex.result):
            hint = f'; for an example that fails, write Example(params, error="{ex.result}")'
        if bad_params:
            raise ValueError(f"{where}: its params do not fit: {bad_params}{hint}")
        try:
            m.result.check(ex.result, "result")
        except _Invalid as e:
            raise ValueError(f"{where}: {e}{hint}") from None
    elif ex.error == "BAD_PAYLOAD":
        if not bad_params:
            raise ValueError(f"{where}: says BAD_PAYLOAD, but its params fit")
    elif ex.error not in m.errors.values():
        raise ValueError(f"{where}: error {ex.error!r} is not one of the method's errors "
                         f"{sorted(m.errors.values()) + ['BAD_PAYLOAD']}")
    elif bad_params:
        raise ValueError(f"{where}: its params do not fit: {bad_params}")
    return ex


def _method_name_problem(name: Any) -> str | None:
    if not isinstance(name, str):
        return "want a str"
    if not 1 <= len(name.encode()) <= 255 or not all(0x21 <= ord(c) <= 0x7E for c in name):
        return "want 1 to 255 characters of printable ASCII, no spaces"
    if name.startswith("rpc."):
        return "names starting with rpc. are JSON-RPC's own"
    return None


# ---- the service ------------------------------------------------------------


class Service:
    """A set of methods served together as JSON-RPC 2.0 over HTTP.

    name is the service's name (the OpenRPC title, and the prefix of its log
    lines), version its OpenRPC info version. Bodies over max_body bytes are
    refused. log receives the start line and internal errors (stderr when
    None).
    """

    def __init__(self, name: str, version: str = "0.1.0", *, description: str | None = None,
                 max_body: int = MAX_BODY, log: TextIO | None = None):
        if not isinstance(name, str) or not name:
            raise ValueError("Service: want a non-empty name")
        if type(max_body) is not int or max_body < 1:
            raise ValueError(f"Service: max_body must be a positive int, got {max_body!r}")
        self.name = name
        self.version = version
        self.description = description
        self.max_body = max_body
        self._log_to = log
        self._log_lock = threading.Lock()
        self._methods: dict[str, _Method] = {}
        self._document: str | None = None  # the JSON text, built on first use

    # -- methods

    def method(self, name: str | Callable | None = None, *, summary: str | None = None, idempotent: bool = False,
               examples: Iterable[Example | tuple] = (), errors: Mapping[int, str] | None = None):
        """Decorator: serve the function as the method name (its own name if
        None). summary defaults to the first line of its docstring.
        idempotent says it may run twice for one call: nexo retries only
        those. errors maps the codes it raises with RPCError (in APP_CODES)
        to their names, e.g. {1404: "NOT_FOUND"}. examples are (params,
        result) pairs or Example objects, checked against the types now.
        The function is returned unchanged. Also usable bare: @svc.method.
        """
        if callable(name):  # @svc.method without parentheses
            return self.method()(name)

        def register(fn: Callable) -> Callable:
            self._add(fn, name if name is not None else fn.__name__, summary, idempotent, examples, errors)
            return fn
        return register

    def _add(self, fn, name, summary, idempotent, examples, errors) -> None:
        label = f"{getattr(fn, '__qualname__', fn)} ({name})"
        problem = _method_name_problem(name)
        if problem:
            raise ValueError(f"{label}: method name {name!r}: {problem}")
        if name in self._methods:
            raise ValueError(f"{label}: method {name} is already served by {self._methods[name].fn!r}")
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"{label}: async functions are not supported; write a plain def")
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as e:  # an annotation that does not resolve
            raise TypeError(f"{label}: its type hints do not resolve: {e}") from None
        params = []
        for p in inspect.signature(fn).parameters.values():
            where = f"{label}: param {p.name!r}"
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{where}: *args and **kwargs are not supported; name every param")
            if p.kind is p.POSITIONAL_ONLY:
                raise TypeError(f"{where}: positional-only params are not supported: params are passed by name")
            if p.name not in hints:
                raise TypeError(f"{where}: has no type hint; {_SUPPORTED}")
            params.append(_Param(p.name, _node(hints[p.name], where), p.default is p.empty))
        if "return" not in hints:
            raise TypeError(f"{label}: has no return type hint (-> None if it returns nothing)")
        result = _node(hints["return"], f"{label}: result")
        if summary is None and fn.__doc__:
            summary = inspect.cleandoc(fn.__doc__).splitlines()[0]
        codes = dict(errors or {})
        for code, ename in codes.items():
            if type(code) is not int or code not in APP_CODES:
                raise ValueError(f"{label}: error code {code!r}: use {APP_CODES.start} to {APP_CODES.stop - 1}, "
                                 f"the codes nexo keeps exactly")
            if not isinstance(ename, str) or not ename:
                raise ValueError(f"{label}: error {code}: want a name such as NOT_FOUND")
        m = _Method(name, fn, params, result, summary, bool(idempotent), codes, [])
        m.examples = [_check_example(m, i, ex) for i, ex in enumerate(examples)]
        self._methods[name] = m
        self._document = None

    @property
    def methods(self) -> list[str]:
        """The names of the methods served, in the order they were added."""
        return list(self._methods)

    def document(self) -> dict:
        """The OpenRPC document rpc.discover answers."""
        return json.loads(self._document_text())

    def _document_text(self) -> str:
        doc = self._document
        if doc is None:
            info: dict = {"title": self.name}
            if self.description:
                info["description"] = self.description
            info["version"] = self.version
            doc = json.dumps({"openrpc": OPENRPC_VERSION, "info": info,
                              "methods": [m.describe() for m in self._methods.values()]},
                             ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            self._document = doc
        return doc

    # -- JSON-RPC

    def handle(self, body: bytes, deadline: float | None = None) -> bytes | None:
        """Run one JSON-RPC message (a call, a notification or a batch) and
        return the answer's JSON, or None when there is none (notifications
        only). deadline is Unix time in seconds. This is the service without
        HTTP, for tests or another transport."""
        return self._handle(body, deadline, None)

    def _handle(self, body: bytes, deadline_at: float | None, refuse: _Refusal | None) -> bytes | None:
        """handle, where refuse (when set) answers the calls instead of
        running them."""
        try:
            msg = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
        except UnicodeDecodeError:
            return _encode(_error(None, PARSE_ERROR, "parse error: the body is not UTF-8"))
        except json.JSONDecodeError as e:
            return _encode(_error(None, PARSE_ERROR, f"parse error: {e.msg} at line {e.lineno} column {e.colno}"))
        except RecursionError:
            return _encode(_error(None, PARSE_ERROR, "parse error: nested too deeply"))
        except ValueError as e:  # NaN or Infinity, an integer over the digits limit
            return _encode(_error(None, PARSE_ERROR, f"parse error: {str(e).split(':')[0]}"))
        if isinstance(msg, list):
            if not msg:
                return _encode(_error(None, INVALID_REQUEST, "invalid request: empty batch"))
            if len(msg) > MAX_BATCH:
                return _encode(_error(None, INVALID_REQUEST, f"invalid request: batch over {MAX_BATCH} calls"))
            answers = [a for a in (self._one(m, deadline_at, refuse) for m in msg) if a is not None]
            return ("[" + ",".join(answers) + "]").encode() if answers else None
        answer = self._one(msg, deadline_at, refuse)
        return answer.encode() if answer is not None else None

    def _one(self, req: Any, deadline_at: float | None, refuse: _Refusal | None) -> str | None:
        """One call's answer as JSON text, or None for a notification."""
        if not isinstance(req, dict):
            return _encode_text(_error(None, INVALID_REQUEST, "invalid request: a call must be an object with "
                                                              "jsonrpc, method, params and id"))
        notification = "id" not in req
        rid = req.get("id")
        if not (rid is None or type(rid) is str or type(rid) is int or (type(rid) is float and math.isfinite(rid))):
            return _encode_text(_error(None, INVALID_REQUEST, "invalid request: id must be a string, a number or null"))
        if req.get("jsonrpc") != "2.0":
            return _encode_text(_error(rid, INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"'))
        method = req.get("method")
        if type(method) is not str:
            return _encode_text(_error(rid, INVALID_REQUEST, 'invalid request: "method" must be a string'))
        params = req.get("params", _ABSENT)
        if params is not _ABSENT and type(params) not in (list, dict):
            return _encode_text(_error(rid, INVALID_REQUEST, "invalid request: params must be an array or an object"))
        answer = self._run(method, params, rid, deadline_at, refuse)
        return None if notification else answer

    def _run(self, name: str, params: Any, rid: Any, deadline_at: float | None, refuse: _Refusal | None) -> str:
        if refuse is not None and not (name == DISCOVER and refuse.code == BUSY):
            return _encode_text(_error(rid, refuse.code, refuse.message, refuse.name))
        if deadline_at is not None and time.time() >= deadline_at:
            return _encode_text(_error(rid, TIMEOUT, "the deadline passed", "TIMEOUT"))
        if name == DISCOVER:
            if params is not _ABSENT and params not in ([], {}):
                return _encode_text(_error(rid, INVALID_PARAMS, f"{DISCOVER} takes no params", "BAD_PAYLOAD"))
            return _result_text(self._document_text(), rid)
        m = self._methods.get(name)
        if m is None:
            return _encode_text(_error(rid, METHOD_NOT_FOUND, f"method not found: {_clip(name)}", "UNKNOWN_METHOD"))
        try:
            kwargs = m.bind(params)
        except _Invalid as e:
            return _encode_text(_error(rid, INVALID_PARAMS, str(e), "BAD_PAYLOAD"))
        token = _deadline.set(deadline_at)
        try:
            value = m.fn(**kwargs)
        except RPCError as e:
            data = e.data
            if data is None and e.code in m.errors:
                data = {"name": m.errors[e.code]}
            try:
                return _encode_text(_error(rid, e.code, e.message, data=data))
            except (TypeError, ValueError) as je:
                self._log(f"{self.name}: {m.name}: RPCError({e.code}) data is not JSON: {je}; the caller got "
                          f"{INTERNAL_ERROR}")
                return _internal(rid)
        except Exception:
            self._log(f"{self.name}: {m.name}: internal error; the caller got {INTERNAL_ERROR}\n"
                      + traceback.format_exc().rstrip())
            return _internal(rid)
        finally:
            _deadline.reset(token)
        try:
            m.result.check(value, "result")
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except _Invalid as e:
            self._log(f"{self.name}: {m.name}: the result does not fit its type: {e}; the caller got {INTERNAL_ERROR}")
            return _internal(rid)
        except (TypeError, ValueError, RecursionError) as e:
            self._log(f"{self.name}: {m.name}: the result is not JSON: {e}; the caller got {INTERNAL_ERROR}")
            return _internal(rid)
        return _result_text(text, rid)

    def _log(self, line: str) -> None:
        out = self._log_to if self._log_to is not None else sys.stderr
        with self._log_lock:
            out.write(line + "\n")
            out.flush()

    # -- HTTP

    def listen(self, addr: str = "127.0.0.1:8000", path: str = "/rpc", *, max_connections: int = 256,
               idle_timeout: float = 120.0) -> Server:
        """A Server bound to addr ("HOST:PORT"; port 0 picks a free one),
        answering POST on path, not yet serving: call its serve_forever().
        At most max_connections connections are served at once, one thread
        each (256: nexo keeps at most 64 per upstream, --upstream-conns); a request on
        a connection past them is answered -32008 (nexo's BUSY), but for
        rpc.discover, and the connection closed. A connection idle for
        idle_timeout seconds is closed (nexo closes its idle ones after
        90)."""
        return Server(self, addr, path, max_connections=max_connections, idle_timeout=idle_timeout)

    def serve(self, addr: str = "127.0.0.1:8000", path: str = "/rpc", *, grace: float = 10.0) -> None:
        """Serve until SIGTERM or SIGINT (or KeyboardInterrupt), then stop
        cleanly: no new connections, calls under way get up to grace seconds
        to finish, and calls that arrive meanwhile are answered -32009
        "shutting down"."""
        self._serve(self.listen(addr, path), grace)

    def _serve(self, server: Server, grace: float) -> None:
        with server:
            with _stop_on_signals(server):
                self._log(f"{self.name}: serving {', '.join(self._methods) or 'no methods'} at {server.url}")
                try:
                    server.serve_forever()
                except KeyboardInterrupt:  # raised by the program itself, not by a signal
                    pass
            server.drain(grace)

    def main(self, argv: list[str] | None = None) -> int:
        """A command line: `--addr HOST:PORT` (default 127.0.0.1:8000) and
        `--path` (default /rpc), then serve. Returns the exit status:
        `sys.exit(svc.main())`."""
        names = ", ".join(self._methods) or "no methods"
        parser = argparse.ArgumentParser(prog=self.name, description=f"Serve {names} as JSON-RPC 2.0 over HTTP "
                                         f"(POST, with {DISCOVER}), for nexo worker --upstream.")
        parser.add_argument("--addr", default="127.0.0.1:8000", metavar="HOST:PORT",
                            help="the address to listen on; port 0 picks a free one (default %(default)s)")
        parser.add_argument("--path", default="/rpc",
                            help="the URL path of the JSON-RPC endpoint (default %(default)s)")
        args = parser.parse_args(argv)
        try:
            _split_addr(args.addr)
        except ValueError as e:
            parser.error(str(e))
        if not args.path.startswith("/"):
            parser.error(f"--path {args.path!r}: want a path starting with /")
        try:
            server = self.listen(args.addr, args.path)
        except OSError as e:
            self._log(f"{self.name}: listen on {args.addr}: {e.strerror or e}")
            return 1
        try:
            self._serve(server, grace=10.0)
        except KeyboardInterrupt:  # a second Ctrl-C while stopping
            return 130
        return 0


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _error(rid: Any, code: int, message: str, name: str | None = None, data: Any = None) -> dict:
    err: dict = {"code": code, "message": message}
    if name is not None:
        data = {"name": name}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": rid}


def _encode_text(answer: dict) -> str:
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _encode(answer: dict) -> bytes:
    return _encode_text(answer).encode()


def _result_text(result_json: str, rid: Any) -> str:
    return '{"jsonrpc":"2.0","result":' + result_json + ',"id":' + json.dumps(rid, ensure_ascii=False) + "}"


def _internal(rid: Any) -> str:
    return _encode_text(_error(rid, INTERNAL_ERROR, "internal error", "INTERNAL"))


@contextlib.contextmanager
def _stop_on_signals(server: Server) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT end server.serve_forever, when this
    is the main thread (elsewhere nothing changes). The handler calls
    shutdown from a thread of its own, as shutdown waits for the loop, which
    runs on this thread. It does not raise KeyboardInterrupt: a handler may
    run inside a finalizer, which drops the exceptions it raises."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, name="stop", daemon=True).start()

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _split_addr(addr: str) -> tuple[str, int]:
    """("HOST", PORT) of "HOST:PORT" or "[V6HOST]:PORT"."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address {addr!r}: want HOST:PORT, such as 127.0.0.1:8000")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _deadline_of(value: str | None) -> float | None:
    """The Nexo-Deadline header as Unix seconds; None when absent or not a
    decimal integer (as nexo's own workers read it)."""
    if value is None or not re.fullmatch(r"\s*-?[0-9]{1,19}\s*", value):
        return None
    return int(value) / 1000


class Server(http.server.HTTPServer):
    """A Service served over HTTP, one thread per connection. Use
    Service.listen to make one; it is a socketserver server: run
    serve_forever(), and from another thread shutdown(), then drain(), then
    server_close() (or use it as a context manager)."""

    request_queue_size = 128

    def __init__(self, service: Service, addr: str, path: str, *, max_connections: int = 256,
                 idle_timeout: float = 120.0):
        host, port = _split_addr(addr)
        self.service = service
        self.path = path
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.draining = False
        self._slots = threading.BoundedSemaphore(max_connections)
        self._spare = threading.BoundedSemaphore(_SPARE)  # connections past the bound, answered BUSY
        self._busy = _Refusal(BUSY, f"busy: the service serves at most {_plural(max_connections, 'connection')}",
                              "BUSY")
        self._calls = 0  # guarded by _idle
        self._idle = threading.Condition()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the host's FQDN, which can
        # take seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def url(self) -> str:
        """The URL served, with the port actually bound."""
        host, port = self.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}{self.path}"

    def process_request(self, request, client_address) -> None:
        """Serve the connection on a thread of its own: a thread of the
        bound, or a spare one that answers its one request BUSY; past both,
        close it at once."""
        if self._slots.acquire(blocking=False):
            slots, handler = self._slots, _Handler
        elif self._spare.acquire(blocking=False):
            slots, handler = self._spare, _BusyHandler
        else:
            self.shutdown_request(request)
            return
        t = threading.Thread(target=self._connection, args=(request, client_address, slots, handler), daemon=True)
        try:
            t.start()
        except BaseException:
            slots.release()
            raise

    def _connection(self, request, client_address, slots, handler) -> None:
        try:
            handler(request, client_address, self)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            slots.release()

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the peer went away
        self.service._log(f"{self.service.name}: the connection from {client_address[0]}: "
                          + traceback.format_exc().rstrip())

    def drain(self, grace: float = 10.0) -> bool:
        """Stop: close the listener, answer calls that arrive from now on
        -32009 "shutting down" with Connection: close, and wait up to grace
        seconds for the calls under way. Reports whether they all ended.
        Call it after serve_forever has returned."""
        self.draining = True
        self.server_close()
        with self._idle:
            return self._idle.wait_for(lambda: self._calls == 0, timeout=grace)

    def run(self, body: bytes, deadline_at: float | None, busy: bool = False) -> bytes | None:
        """Run one request's body, counted as a call under way. While
        draining, its calls are answered SHUTTING_DOWN; on a connection past
        the bound (busy), BUSY, but for rpc.discover: nexo's health check
        then sees the service up."""
        with self._idle:
            self._calls += 1
        try:
            refuse = _SHUTTING_DOWN if self.draining else self._busy if busy else None
            return self.service._handle(body, deadline_at, refuse)
        finally:
            with self._idle:
                self._calls -= 1
                self._idle.notify_all()


class _Handler(http.server.BaseHTTPRequestHandler):
    """One connection: requests one after another (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "nexo-py-service"
    disable_nagle_algorithm = True  # headers and body are two writes
    server: Server

    busy = False  # see _BusyHandler

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        self.timeout = 2.0 if self.busy else self.server.idle_timeout
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        """Quiet: http.server would log every request and idle timeout."""

    def do_POST(self) -> None:
        if not self._on_path():
            return
        if self.headers.get_content_type() != "application/json":
            return self._refuse(415, "send the JSON-RPC body with Content-Type: application/json")
        length = self._length()
        if length is None:
            return self._refuse(411, "send the body with a Content-Length (chunked bodies are not accepted)")
        if length < 0:
            return self._refuse(400, "bad Content-Length")
        if length > self.server.service.max_body:
            return self._refuse_rpc(413, INVALID_PARAMS, f"the request is over {self.server.service.max_body} bytes",
                                    "BAD_PAYLOAD")
        body = self.rfile.read(length)
        if len(body) < length:  # the peer hung up
            self.close_connection = True
            return
        out = self.server.run(body, _deadline_of(self.headers.get(DEADLINE_HEADER)), self.busy)
        if out is None:
            self._send(204, None)
        else:
            self._send(200, out, "application/json")

    def _not_post(self) -> None:
        if self._on_path():
            self._refuse(405, "JSON-RPC is POST only", allow=True)

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_post

    def _on_path(self) -> bool:
        if urlsplit(self.path).path == self.server.path:
            return True
        self._refuse(404, f"not found: JSON-RPC is at {self.server.path}")
        return False

    def _length(self) -> int | None:
        """The body's Content-Length; None when there is none (or it is
        chunked), -1 when it is malformed."""
        if self.headers.get("Transfer-Encoding") is not None:
            return None
        values = self.headers.get_all("Content-Length")
        if not values:
            return None
        if len(set(values)) != 1 or not re.fullmatch(r"[0-9]{1,18}", values[0].strip()):
            return -1
        return int(values[0])

    def _skip_body(self) -> bool:
        """Read and drop the body of a request that is not run, so that the
        connection can carry the next one; False when it cannot be."""
        length = self._length()
        if self.headers.get("Transfer-Encoding") is not None or (length is not None and length < 0):
            return False
        length = length or 0
        if length > self.server.service.max_body + _DISCARD:
            return False
        while length > 0:
            chunk = self.rfile.read(min(length, 64 << 10))
            if not chunk:
                return False
            length -= len(chunk)
        return True

    def _refuse(self, status: int, text: str, allow: bool = False) -> None:
        close = not self._skip_body()
        headers = [("Allow", "POST")] if allow else []
        self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8", close=close, headers=headers)

    def _refuse_rpc(self, status: int, code: int, message: str, name: str) -> None:
        """Refuse a POST with a JSON-RPC error as well as the HTTP status, so
        that a JSON-RPC client (nexo among them) reads a code it knows."""
        close = not self._skip_body()
        self._send(status, _encode(_error(None, code, message, name)), "application/json", close=close)

    def _send(self, status: int, body: bytes | None, ctype: str = "", *, close: bool = False,
              headers: list[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        if close or self.server.draining or self.busy:
            self.send_header("Connection", "close")  # also sets close_connection
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)


class _BusyHandler(_Handler):
    """A connection past max_connections: its one request is read, its
    calls answered -32008 (nexo's BUSY) but for rpc.discover, and it is
    closed. Reading the request first lets the client read the answer
    (closing with a request unread would reset the connection)."""

    busy = True

    def handle(self) -> None:
        self.handle_one_request()
