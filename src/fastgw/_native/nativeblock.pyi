"""ClickHouse Native blocks from row dicts (compiled twin: nativeblock.pyx; pure twin and shared
parts: _pure/nativeblock.py).

Why: the exporter writes every request log row to ClickHouse. Handing rows to clickhouse-connect
means one Python list per column and then its Python-level Native serialiser: about 15 µs per
1 KB-bodied row, more than the engine takes to store it. Here the rows are read once, straight
into the bytes ClickHouse reads fastest; the sink sends them with ``raw_insert(fmt="Native")``.
The compiled twin reads ``tile`` rows at a time across all columns (a cache matter: the block is
the same for any ``tile``).

A block is ``varint(columns) varint(rows)`` and then, per column, its name and type as
varint-prefixed strings and its data:

- String: each value as varint(length) + UTF-8. LowCardinality(String) is sent as String, and
  ClickHouse converts on insert (``input_format_native_allow_types_conversion``).
- (U)Int8..64, Float64, Bool: fixed width, little-endian. DateTime64(3): Int64 milliseconds.
- UUID: the high 64 bits, then the low 64, each little-endian.
- Nullable(T): a byte per row (1 = NULL), then T's data with zero for the NULLs.
- Map(String, String): cumulative UInt64 entry counts per row, then every key, then every value.
- Array(Tuple(...)): cumulative UInt64 element counts, then each tuple element's column.

Values: a missing key or None takes the column's default (Nullable: NULL); a required column
without one raises BlockError. Integers must be ints (bools count) within the type's range; times
are epoch seconds (int, or float rounded half-to-even to the millisecond), datetimes (naive = UTC)
or ISO-8601 text; UUIDs are text, ``uuid.UUID`` or 16 big-endian bytes; text is str (UTF-8,
strict) or bytes. Anything else raises BlockError, naming the column and the row. Both twins
return the same bytes for every input, and raise BlockError for the same inputs.
"""
from collections.abc import Mapping, Sequence
from typing import Any

class BlockError(ValueError): ...

Spec = tuple[tuple[Any, ...], ...]

def layout(columns: Sequence[tuple[str, str, Any, bool]]) -> Spec: ...
def encode_block(spec: Spec, rows: Sequence[Mapping[str, Any]], tile: int = 32) -> bytes: ...
