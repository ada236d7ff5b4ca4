"""ClickHouse Native blocks from row dicts, in Python (compiled twin: nativeblock.pyx; contract:
nativeblock.pyi). This module also owns what both twins share: the column types understood,
``layout`` (parsed once per table, not per batch), the error, and the conversions of the rare
value forms (datetimes, ISO text, UUIDs not in their canonical text form).
"""

from __future__ import annotations

import calendar
import re
import struct
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

__all__ = ["BlockError", "encode_block", "layout"]

# Kinds of value; the compiled twin switches on the same numbers.
STRING, BOOL, U8, U16, U32, U64, I8, I16, I32, I64, F64, UUID_, DT64_MS, MAP, ARRAY_TUPLE = range(15)

_INTS = {"UInt8": (U8, "<B"), "UInt16": (U16, "<H"), "UInt32": (U32, "<I"), "UInt64": (U64, "<Q"),
         "Int8": (I8, "<b"), "Int16": (I16, "<h"), "Int32": (I32, "<i"), "Int64": (I64, "<q")}
INT_FORMAT = {kind: fmt for kind, fmt in _INTS.values()}
INT_RANGE = {kind: (-(1 << (struct.calcsize(fmt) * 8 - 1)) if fmt[1].islower() else 0,
                    (1 << (struct.calcsize(fmt) * 8 - (1 if fmt[1].islower() else 0))) - 1)
             for kind, fmt in INT_FORMAT.items()}
# What a NULL is written as in a Nullable column, and a missing tuple element.
_ZERO = {STRING: "", BOOL: False, F64: 0.0, DT64_MS: 0, UUID_: "00000000-0000-0000-0000-000000000000",
         **{kind: 0 for kind in INT_FORMAT}}
_DT64_3 = re.compile(r"DateTime64\(3(, *'[^']*')?\)")
_TUPLE_ELEMENT = re.compile(r"\s*(\w+) +(.+?)\s*$")


class BlockError(ValueError):
    """A value the column's type cannot hold; the message names the column and the row."""


def _scalar(type_: str) -> tuple[int, str] | None:
    """(kind, the type written in the block) for a type a value maps to one-to-one, else None.

    LowCardinality(String) is sent as String: ClickHouse converts on insert
    (``input_format_native_allow_types_conversion``, on by default), which spares us its
    dictionary encoding.
    """
    if type_ in ("String", "LowCardinality(String)"):
        return STRING, "String"
    if type_ == "Bool":
        return BOOL, "Bool"
    if type_ == "Float64":
        return F64, "Float64"
    if type_ == "UUID":
        return UUID_, "UUID"
    if type_ in _INTS:
        return _INTS[type_][0], type_
    if _DT64_3.fullmatch(type_):
        return DT64_MS, type_
    return None


def _split_top(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def layout(columns: Sequence[tuple[str, str, Any, bool]]) -> tuple[tuple[Any, ...], ...]:
    """Parse a table's columns, given as (name, ClickHouse type, default, required), once.

    Each entry becomes (name, kind, nullable, default, required, header, elements), where header is
    the column's name and block type as the block writes them, and elements, for an
    Array(Tuple(...)), the (name, kind, zero) of each element. Raises ValueError for a type neither
    twin encodes, naming the column.
    """
    out = []
    for name, type_, default, required in columns:
        nullable = type_.startswith("Nullable(") and type_.endswith(")")
        inner = type_[9:-1] if nullable else type_
        elements: tuple[tuple[str, int, Any], ...] = ()
        scalar = _scalar(inner)
        if scalar is not None and not (nullable and inner.startswith("LowCardinality")):
            kind, wire = scalar
            wire = f"Nullable({wire})" if nullable else wire
        elif not nullable and inner.startswith("Map(") and inner.endswith(")") \
                and [p.strip() for p in _split_top(inner[4:-1])] in (["String", "String"],
                                                                    ["LowCardinality(String)", "String"]):
            kind, wire = MAP, "Map(String, String)"
        elif not nullable and inner.startswith("Array(Tuple(") and inner.endswith("))"):
            parsed = []
            for part in _split_top(inner[12:-2]):
                m = _TUPLE_ELEMENT.match(part)
                element = _scalar(m.group(2)) if m else None
                if m is None or element is None or element[0] == UUID_:
                    raise ValueError(f"column {name!r}: tuple element {part.strip()!r} of {type_} is not "
                                     "supported by the Native block encoder")
                parsed.append((m.group(1), element[0], _ZERO.get(element[0], 0), element[1]))
            elements = tuple(p[:3] for p in parsed)
            kind = ARRAY_TUPLE
            wire = "Array(Tuple(" + ", ".join(f"`{n}` {w}" for n, _, _, w in parsed) + "))"
        else:
            raise ValueError(f"column {name!r}: type {type_} is not supported by the Native block encoder")
        header = _string(name.encode()) + _string(wire.encode())
        out.append((name, kind, nullable, default, bool(required), header, elements))
    return tuple(out)


# --- the block -------------------------------------------------------------------------------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _string(data: bytes) -> bytes:
    return varint(len(data)) + data


def encode_block(spec: tuple[tuple[Any, ...], ...], rows: Sequence[Mapping[str, Any]], tile: int = 32) -> bytes:
    """One Native block: every column of ``spec`` for every row, in order.

    A missing or None value takes the column's default (a Nullable column's default None is
    NULL); a required column without a value, or a value its type cannot hold, raises BlockError.
    ``tile`` is how many rows the compiled twin writes per pass over the columns, for its CPU
    caches; the block does not depend on it, and here it is only checked.
    """
    if tile < 1:
        raise ValueError("tile must be at least 1")
    n = len(rows)
    out = [varint(len(spec)), varint(n)]
    for name, kind, nullable, default, required, header, elements in spec:
        values = []
        for i, row in enumerate(rows):
            value = row.get(name)
            if value is None:
                if required:
                    raise BlockError(f"row {i} has no {name}; the column is required")
                value = default
            values.append(value)
        out.append(header)
        if nullable:
            out.append(bytes(1 if v is None else 0 for v in values))
            values = [_ZERO.get(kind, 0) if v is None else v for v in values]
        if kind == MAP:
            out.append(_map_column(name, values))
        elif kind == ARRAY_TUPLE:
            out.append(_array_tuple_column(name, elements, values))
        else:
            out.append(_column(name, kind, values))
    return b"".join(out)


def _column(name: str, kind: int, values: list[Any]) -> bytes:
    return b"".join(_value(name, kind, v, i) for i, v in enumerate(values))


def _value(name: str, kind: int, value: Any, i: int) -> bytes:
    if kind == STRING:
        return _string(_text(name, value, i))
    if kind == BOOL:
        return b"\x01" if value else b"\x00"
    if kind == F64:
        if not isinstance(value, (int, float)):
            raise BlockError(f"column {name!r}, row {i}: expected a number, got {type(value).__name__}")
        try:  # the stored value, as the compiled twin reads it, even if a subclass overrides __float__
            return struct.pack("<d", int.__float__(value) if isinstance(value, int) else float.__float__(value))
        except OverflowError:
            raise BlockError(f"column {name!r}, row {i}: {value} is out of range") from None
    if kind == UUID_:
        u = uuid_int(name, value, i)
        return struct.pack("<QQ", u >> 64, u & 0xFFFF_FFFF_FFFF_FFFF)
    if kind == DT64_MS:
        return struct.pack("<q", _checked(name, I64, epoch_ms(name, value, i), i))
    return struct.pack(INT_FORMAT[kind], _checked(name, kind, _integer(name, value, i), i))


def _text(name: str, value: Any, i: int) -> bytes:
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BlockError(f"column {name!r}, row {i}: text that is not valid Unicode ({exc.reason})") from None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise BlockError(f"column {name!r}, row {i}: expected text, got {type(value).__name__}")


def _integer(name: str, value: Any, i: int) -> int:
    if isinstance(value, int):
        return int.__int__(value)  # the stored value, even if a subclass overrides __int__
    raise BlockError(f"column {name!r}, row {i}: expected an integer, got {type(value).__name__}")


def _checked(name: str, kind: int, value: int, i: int) -> int:
    low, high = INT_RANGE[kind]
    if not low <= value <= high:
        raise BlockError(f"column {name!r}, row {i}: {value} is out of range")
    return value


def _map_column(name: str, values: list[Any]) -> bytes:
    offsets, keys, vals, total = [], [], [], 0
    for i, value in enumerate(values):
        if not isinstance(value, Mapping):
            raise BlockError(f"column {name!r}, row {i}: expected a map, got {type(value).__name__}")
        for k, v in value.items():
            keys.append(_string(_text(name, k, i)))
            vals.append(_string(_text(name, v, i)))
        total += len(value)
        offsets.append(total)
    return struct.pack(f"<{len(offsets)}Q", *offsets) + b"".join(keys) + b"".join(vals)


def _array_tuple_column(name: str, elements: tuple[tuple[str, int, Any], ...], values: list[Any]) -> bytes:
    offsets, items, total = [], [], 0
    for i, value in enumerate(values):
        if not isinstance(value, (list, tuple)):
            raise BlockError(f"column {name!r}, row {i}: expected a list, got {type(value).__name__}")
        for item in value:
            if isinstance(item, Mapping):
                fields = [item.get(e[0]) for e in elements]
            elif isinstance(item, (list, tuple)) and len(item) == len(elements):
                fields = list(item)
            else:
                raise BlockError(f"column {name!r}, row {i}: each element must be a map or a "
                                 f"{len(elements)}-tuple")
            items.append((i, fields))
        total += len(value)
        offsets.append(total)
    out = [struct.pack(f"<{len(offsets)}Q", *offsets)]
    for j, (_, kind, zero) in enumerate(elements):
        out.append(b"".join(_value(name, kind, zero if f[j] is None else f[j], i) for i, f in items))
    return b"".join(out)


# --- the rare forms, shared with the compiled twin -------------------------------------------

def epoch_ms(name: str, value: Any, i: int) -> int:
    """DateTime64(3) ticks from epoch seconds (int or float), a datetime (naive is UTC) or ISO text."""
    if isinstance(value, bool):
        raise BlockError(f"column {name!r}, row {i}: expected a time, got bool")
    if isinstance(value, int):
        return int.__int__(value) * 1000
    if isinstance(value, float):
        try:
            return round(value * 1000)
        except (OverflowError, ValueError):
            raise BlockError(f"column {name!r}, row {i}: {value} is not a time") from None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise BlockError(f"column {name!r}, row {i}: {value!r} is not an ISO-8601 time") from None
    if isinstance(value, datetime):
        try:
            return calendar.timegm(value.utctimetuple()) * 1000 + value.microsecond // 1000
        except (OverflowError, ValueError):  # an offset that takes it past year 1 or 9999
            raise BlockError(f"column {name!r}, row {i}: {value} is out of range") from None
    raise BlockError(f"column {name!r}, row {i}: expected a time, got {type(value).__name__}")


def uuid_int(name: str, value: Any, i: int) -> int:
    if isinstance(value, UUID):
        return value.int
    if isinstance(value, (bytes, bytearray)) and len(value) == 16:
        return int.from_bytes(value, "big")
    try:
        if isinstance(value, str):
            return UUID(value).int
    except ValueError:
        pass
    raise BlockError(f"column {name!r}, row {i}: {value!r} is not a UUID") from None
