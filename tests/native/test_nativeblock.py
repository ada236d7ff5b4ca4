"""The Native block encoder, both twins: equal to each other on every input, equal to
clickhouse-connect's own Native encoder (an independent implementation) on the request-log
schema, and refusing the same bad values with BlockError. Round trips through chDB are in
tests/requestlog/test_sinks.py, which writes through this encoder.
"""
import datetime as dt
import math
import uuid

import pytest
from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver.insert import InsertContext
from clickhouse_connect.driver.transform import NativeTransform
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw.requestlog import schema
from fastgw.requestlog.sinks.clickhouse import build_columns
from tests.native.twins import load_twin

PURE = load_twin("pure", "nativeblock")
CYTHON = load_twin("cython", "nativeblock")
REQUESTS = PURE.layout([(c.name, c.type, c.default, c.required) for c in schema.REQUESTS.insert_columns])
UTC = dt.timezone.utc


def both(spec, rows):
    """The block from each twin; they must agree, on the bytes or on refusing."""
    outcomes = []
    for twin in (PURE, CYTHON):
        try:
            outcomes.append(twin.encode_block(spec, rows))
        except PURE.BlockError as exc:
            outcomes.append(("refused", type(exc)))
    assert outcomes[0] == outcomes[1]
    return outcomes[0]


def wire_types(spec):
    """The block type of each column, read back from its header (varint-prefixed name, then type)."""
    out = []
    for column in spec:
        header = column[5]
        type_at = 1 + header[0]
        out.append(header[type_at + 1:].decode())
    return out


def request_row(i, **extra):
    row = {
        "request_id": str(uuid.UUID(int=i + 1, version=4)), "created_at": 1_764_900_000.123 + i,
        "total_us": 1000 * i, "ttfb_us": 40, "upstream_us": 39, "gateway_us": 7, "method": "POST",
        "path": "/v1/chat/completions", "provider": "openai", "target_url": "https://api.openai.com/v1",
        "model_requested": "gpt-4o", "model_served": "gpt-4o-2024-08-06", "status": 200, "stream": i % 2 == 0,
        "prompt_tokens": 12, "completion_tokens": 3, "usage_source": "provider", "cost_nanousd": 12345 * i,
        "user_id": "ü-ser", "properties": {"env": "prod", "team": "日本"}, "request_headers": {"user-agent": "x"},
        "attempts": [{"target": "openai", "status": 500, "error": "boom", "start_us": 1, "dur_us": 2,
                      "fallback_index": -1},
                     {"target": "anthropic", "status": 200, "error": "", "start_us": 3, "dur_us": 4,
                      "fallback_index": 0}],
        "request_body": '{"messages":[]}' * (i % 3), "response_body": "🙂" * i, "worker": 3,
    }
    row.update(extra)
    return row


def test_the_request_schema_matches_clickhouse_connects_encoder():
    rows = [request_row(i) for i in range(40)]
    rows[5]["cost_nanousd"] = None
    rows[6] = {"request_id": rows[6]["request_id"], "created_at": rows[6]["created_at"]}  # the rest defaulted
    ours = both(REQUESTS, rows)
    names = [c[0] for c in REQUESTS]
    context = InsertContext("t", names, [get_from_name(t) for t in wire_types(REQUESTS)],
                            build_columns(schema.REQUESTS, rows), column_oriented=True)
    theirs = b"".join(NativeTransform().build_insert(context))
    assert theirs.startswith(b"INSERT INTO t")
    assert ours == theirs[theirs.index(b"\n") + 1:]


def test_layout_types_and_refusals():
    assert wire_types(REQUESTS)[names_index("provider")] == "String"  # LowCardinality is sent as String
    assert wire_types(REQUESTS)[names_index("properties")] == "Map(String, String)"
    assert wire_types(REQUESTS)[names_index("cost_nanousd")] == "Nullable(Int64)"
    for bad in ("Decimal(10, 2)", "Array(String)", "Nullable(Map(String, String))", "Map(String, UInt8)",
                "Array(Tuple(id UUID))"):
        with pytest.raises(ValueError, match="column 'c'"):
            PURE.layout([("c", bad, None, False)])
    assert CYTHON.layout is PURE.layout  # one parser for both twins


def names_index(name):
    return [c[0] for c in REQUESTS].index(name)


SMALL = PURE.layout([("id", "UUID", None, True), ("at", "DateTime64(3, 'UTC')", None, True),
                     ("n", "UInt8", 0, False), ("i", "Int8", -1, False), ("u64", "UInt64", 0, False),
                     ("f", "Float64", 0.0, False), ("ok", "Nullable(Bool)", None, False),
                     ("s", "LowCardinality(String)", "", False)])
ID = "5b6a4b2e-9f0e-4c39-9d38-3b7f1e8c2a11"


def small(**values):
    row = {"id": ID, "at": 0}
    row.update(values)
    return [row]


@pytest.mark.parametrize("value", [ID, ID.upper(), "{" + ID + "}", ID.replace("-", ""), "urn:uuid:" + ID,
                                   uuid.UUID(ID), uuid.UUID(ID).bytes])
def test_every_uuid_form_is_the_same_uuid(value):
    assert both(SMALL, small(id=value)) == both(SMALL, small(id=ID))


AT = PURE.layout([("at", "DateTime64(3, 'UTC')", None, True)])


@pytest.mark.parametrize("value, ms", [
    (1_764_900_000, 1_764_900_000_000), (-1.5, -1500), (2.5e-3, round(2.5e-3 * 1000)), (1.0005, round(1.0005 * 1000)),
    (0.0125, round(0.0125 * 1000)), (1_764_900_000.1235, round(1_764_900_000.1235 * 1000)),
    (dt.datetime(2025, 3, 4, 5, 6, 7, 891999), 1_741_064_767_891),
    (dt.datetime(2025, 3, 4, 6, 6, 7, 891000, tzinfo=dt.timezone(dt.timedelta(hours=1))), 1_741_064_767_891),
    ("2025-03-04T05:06:07.891+00:00", 1_741_064_767_891),
])
def test_times_become_milliseconds(value, ms):
    assert both(AT, [{"at": value}]).endswith(ms.to_bytes(8, "little", signed=True))


def test_half_milliseconds_round_to_even_like_round():
    for value in (0.5e-3 * k for k in range(-20, 20)):  # x.5 ms where the product is exact
        assert both(AT, [{"at": value}]).endswith(round(value * 1000).to_bytes(8, "little", signed=True))


@pytest.mark.parametrize("values", [
    {"id": "not-a-uuid"}, {"id": "5b6a4b2e-9f0e-4c39-9d38-3b7f1e8c2a1g"}, {"id": 5}, {"id": None}, {"at": None},
    {"at": math.nan}, {"at": math.inf}, {"at": 1e300}, {"at": True}, {"at": "yesterday"}, {"at": 2 ** 62},
    {"n": 256}, {"n": -1}, {"n": 1.0}, {"n": "1"}, {"i": -129}, {"i": 128}, {"u64": -1}, {"u64": 2 ** 64},
    {"f": "1.0"}, {"f": 10 ** 400}, {"s": 5}, {"s": "\ud800"}, {"s": ["a"]},
    {"at": "0001-01-01T00:00:00+01:00"}, {"at": dt.datetime.max.replace(tzinfo=dt.timezone(-dt.timedelta(hours=1)))},
])
def test_bad_values_are_refused_by_both(values):
    assert both(SMALL, small(**values)) == ("refused", PURE.BlockError)


def test_limits_and_defaults():
    edge = small(n=255, i=-128, u64=2 ** 64 - 1, f=10 ** 300, ok=False, s=b"raw")
    assert both(SMALL, edge) != both(SMALL, small())
    assert both(SMALL, [{"id": ID, "at": 0, "n": None, "ok": None}]) == both(SMALL, small())
    assert both(SMALL, []) == b"\x08\x00" + b"".join(c[5] for c in SMALL)


def test_tuple_elements_by_position_or_by_name():
    by_name = request_row(1)
    by_position = dict(by_name, attempts=[tuple(a.values()) for a in by_name["attempts"]])
    partial = dict(by_name, attempts=[{"target": "openai"}])  # missing fields take their zero
    zeros = dict(by_name, attempts=[("openai", 0, "", 0, 0, 0)])
    assert both(REQUESTS, [by_position]) == both(REQUESTS, [by_name])
    assert both(REQUESTS, [partial]) == both(REQUESTS, [zeros])
    assert both(REQUESTS, [dict(by_name, attempts=[("openai", 200)])]) == ("refused", PURE.BlockError)


def test_a_null_uuid_is_written_as_null():
    spec = PURE.layout([("u", "Nullable(UUID)", None, False)])
    block = both(spec, [{"u": None}, {}])
    assert isinstance(block, bytes)
    assert block.endswith(b"\x01\x01" + bytes(32))  # two NULL flags, then two zero UUIDs


def test_subclasses_are_read_for_their_stored_value():
    spec = PURE.layout([("n", "UInt32", 0, False), ("f", "Float64", 0.0, False)])

    class Cents(int):
        def __int__(self):
            return 7

        def __float__(self):
            return 7.0

    class Half(float):
        def __float__(self):
            return 2.0

    assert both(spec, [{"n": Cents(3), "f": Cents(3)}]) == both(spec, [{"n": 3, "f": 3.0}])
    assert both(spec, [{"f": Half(1.0)}]) == both(spec, [{"f": 1.0}])
    assert both(spec, [{"n": Cents(2 ** 32)}]) == ("refused", PURE.BlockError)


def test_rows_may_be_any_mapping():
    class Row(dict):
        pass

    rows = [request_row(i) for i in range(5)]
    assert both(REQUESTS, [Row(r) for r in rows]) == both(REQUESTS, rows)


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
ROW = st.fixed_dictionaries({
    "request_id": st.uuids().map(str), "created_at": st.floats(-1e10, 1e10, allow_nan=False),
}, optional={
    "status": st.integers(0, 65535), "fallback_index": st.integers(-128, 127),
    "cost_nanousd": st.none() | st.integers(-2 ** 63, 2 ** 63 - 1), "provider": TEXT, "request_body": TEXT,
    "stream": st.booleans(), "properties": st.dictionaries(TEXT, TEXT, max_size=4),
    "attempts": st.lists(st.tuples(TEXT, st.integers(0, 65535), TEXT, st.integers(0, 2 ** 32 - 1),
                                   st.integers(0, 2 ** 32 - 1), st.integers(-128, 127)), max_size=3),
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROW, max_size=8))
def test_twins_agree_on_any_rows(rows):
    assert isinstance(both(REQUESTS, rows), bytes)


# --- the compiled twin writes tiles of rows into per-column buffers, kept between blocks ---------


def tiled(spec, rows, tiles=(1, 2, 3, 32, 10_000)):
    """The compiled twin's block for each tile size; each must be the pure twin's block."""
    expected = PURE.encode_block(spec, rows)
    for tile in tiles:
        assert CYTHON.encode_block(spec, rows, tile) == expected, tile
    return expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROW, max_size=8))
def test_any_tile_size_gives_the_same_block(rows):
    tiled(REQUESTS, rows)


def test_a_batch_spanning_many_tiles_and_blocks_of_every_size_in_turn():
    rows = [request_row(i, properties={f"p{j}": str(j) for j in range(i % 5)}, attempts=[] if i % 3 else None,
                        cost_nanousd=None if i % 7 == 0 else i) for i in range(700)]
    big = tiled(REQUESTS, rows)
    # The kept buffers start each block empty: a small block after a big one holds only its own rows.
    assert tiled(REQUESTS, rows[:3]) == PURE.encode_block(REQUESTS, rows[:3])
    assert tiled(SMALL, small()) == PURE.encode_block(SMALL, small())
    assert CYTHON.encode_block(REQUESTS, rows) == big


def test_a_bad_value_in_a_later_tile_is_the_one_a_column_at_a_time_refuses():
    rows = [request_row(i) for i in range(100)]
    rows[90]["status"] = -1  # an early column, late row: a later tile
    rows[5]["worker"] = "x"  # a late column, early row: met first when going tile by tile
    for tile in (1, 32, 1000):
        with pytest.raises(PURE.BlockError) as compiled:
            CYTHON.encode_block(REQUESTS, rows, tile)
        with pytest.raises(PURE.BlockError) as pure:
            PURE.encode_block(REQUESTS, rows, tile)
        assert "status" in str(compiled.value) and "row 90" in str(compiled.value), compiled.value
        assert "status" in str(pure.value) and "row 90" in str(pure.value), pure.value
    rows[90]["status"] = 200
    rows[5]["worker"] = 3
    assert isinstance(tiled(REQUESTS, rows), bytes)  # and the kept buffers were given back after refusing


def test_a_row_that_encodes_a_block_while_being_read_gets_its_own_buffers():
    inner_rows = [request_row(i) for i in range(40)]
    inner: list[bytes] = []

    class Row(dict):
        def get(self, key, default=None):
            if key == "worker" and not inner:  # another block, mid-block: the kept buffers are in use
                inner.append(CYTHON.encode_block(REQUESTS, inner_rows))
            return super().get(key, default)

    rows = [request_row(i) for i in range(40)]
    assert CYTHON.encode_block(REQUESTS, [Row(r) for r in rows]) == PURE.encode_block(REQUESTS, rows)
    assert inner == [PURE.encode_block(REQUESTS, inner_rows)]


def test_tile_must_be_positive():
    for twin in (PURE, CYTHON):
        with pytest.raises(ValueError):
            twin.encode_block(SMALL, small(), 0)


# --- the compiled twin gathers each row's cells in one walk over its dict ------------------------


def test_keys_equal_to_the_column_names_are_found_whatever_the_string_object():
    """The gather finds a column by its name's hash, then by identity or equality: keys made at run
    time (not the interned names of the spec) and keys that are not columns at all."""
    # Only columns with a default: a key the gather missed would become its column's default, where
    # a refused value (a required column, a UUID of None) would send the whole block to the pure
    # twin and hide the miss.
    optional = PURE.layout([(c.name, c.type, c.default, False) for c in schema.REQUESTS.insert_columns
                            if c.name not in ("request_id", "created_at")])
    rows = [request_row(i) for i in range(40)]
    rebuilt = [{"".join(list(k)): v for k, v in r.items()} for r in rows]
    assert all(next(iter(r)) is not next(iter(s)) for r, s in zip(rows, rebuilt))  # not the same objects
    extra = [dict(r, **{f"not_a_column_{j}": j for j in range(60)}, stauts=1) for r in rows]
    expected = PURE.encode_block(optional, rows)
    assert expected != PURE.encode_block(optional, [{} for _ in rows])
    assert tiled(optional, rebuilt) == tiled(optional, extra) == expected


def test_rows_emptied_while_their_tile_is_written_are_encoded_as_they_were_read():
    """Python code may run while a tile's columns are written (here a Mapping's iteration, for the
    properties column). It empties every row; the cells the tile read first are held, so the block
    is the rows' as they were, with nothing read after it was freed."""
    from collections.abc import Mapping

    def fresh_row(i):  # values that only the row holds, so clearing it would free them
        return request_row(i, user_id="".join(["u", str(i)] * 3), path="/v1/" + "x" * (i + 1))

    rows = [fresh_row(i) for i in range(6)]

    class Emptying(Mapping):
        def __getitem__(self, key):
            return {"a": "b"}[key]

        def __len__(self):
            return 1

        def __iter__(self):
            for r in rows:
                r.clear()
            return iter(["a"])

    expected = PURE.encode_block(REQUESTS, [dict(fresh_row(0), properties={"a": "b"})] + [fresh_row(i) for i in range(1, 6)])
    rows[0]["properties"] = Emptying()
    assert CYTHON.encode_block(REQUESTS, rows) == expected


def test_a_key_whose_own_code_empties_the_row_is_looked_up_as_dicts_do():
    """A key that is not an exact str may hash and compare in Python, and change the row while it
    does: such a row is read by a lookup per column (as the pure twin reads it), never by the walk
    over borrowed entries. Here its __eq__ empties the row when the user_id column is looked up;
    the columns after it take their defaults in both twins, and nothing freed is read."""
    class Clearing(str):
        __hash__ = str.__hash__

        def __eq__(self, other):
            self.row.clear()
            return str.__eq__(self, other)

    def make():
        row = request_row(1)
        del row["user_id"]
        key = Clearing("user_id")
        key.row = row
        row[key] = "".join(["u", "-", str(len(row))])  # a value only the row holds
        return row

    pure = PURE.encode_block(REQUESTS, [make()])
    assert pure != PURE.encode_block(REQUESTS, [request_row(1)])  # the row was emptied on the way
    for _ in range(3):
        assert CYTHON.encode_block(REQUESTS, [make()]) == pure


def test_a_column_named_twice_gets_its_value_twice():
    spec = PURE.layout([("a", "String", "", False), ("a", "String", "", False), ("b", "UInt8", 0, False)])
    rows = [{"a": "x", "b": 1}, {"a": "y"}]
    assert both(spec, rows) == PURE.encode_block(spec, rows)
    assert PURE.encode_block(spec, rows) != PURE.encode_block(spec, [{"b": 1}, {}])
