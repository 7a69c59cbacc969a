"""
JSON on the per-token path, in C (orjson): each of the model's chunks is decoded, and
each event encoded for every reader's frames and for the Redis event log.

The bytes are the standard library's compact form (`ensure_ascii=False`, no spaces);
only a float written with an exponent may be spelled otherwise (1e-05 as 0.00001), the
same number. What orjson refuses, the standard library handles as it always did: a lone
surrogate or NaN in a model's chunk; writing an integer past 64 bits or a key that is not
a string. Reading, such an integer becomes the nearest float (no field read from a chunk
is one).
"""

import json
from typing import Any

import orjson

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(value: Any) -> bytes:
    """Return value as compact JSON, UTF-8 encoded."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError included
        return _compact(value).encode()


def loads(data: bytes | str) -> Any:
    """Return the value of a JSON document; ValueError if it is not one."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
