"""
JSON on the per-token path, in C (orjson): each of the model's chunks is decoded, and
each event encoded for every reader's frames and for the Redis event log.

Written, a value of JSON's own types (str, int, float, bool, None, list, tuple, dict) is
the standard library's compact form (`ensure_ascii=False`, no spaces), byte for byte,
but for floats: one written with an exponent may be spelled otherwise (1e-05 as
0.00001), the same number, and NaN and the infinities are written `null` (the standard
library writes `NaN`, which is not JSON). A UUID or an Enum member is written as its
value, where the standard library raised TypeError; datetimes and dataclasses still
raise it. What orjson refuses goes to the standard library, which answers as it always
did: a key that is not a string, an integer past 64 bits, a lone surrogate.

Read, an integer past 64 bits becomes the nearest float: a document that may hold one
exactly (a tool's result) is for the standard library. What orjson refuses to read (a
lone surrogate, `NaN`) goes to the standard library too.
"""

import json
from typing import Any

import orjson

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_PASSED_ON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any) -> bytes:
    """Return value as compact JSON, UTF-8 encoded."""
    try:
        return orjson.dumps(value, option=_PASSED_ON)
    except TypeError:  # orjson.JSONEncodeError included
        return _compact(value).encode()


def loads(data: bytes | str) -> Any:
    """Return the value of a JSON document; ValueError if it is not one."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
