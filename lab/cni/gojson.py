"""JSON as Go's encoding/json writes it, so the bytes a plugin reads are the bytes libcni sends.

libcni builds each plugin's stdin by decoding the configuration into a map and encoding it again
(libcni/api.go: InjectConf): a map's keys come out sorted, a struct's fields in their declared
order (go-cni's PortMapping and BandWidth, libcni's Result), compact, with <, > and & escaped.
A Struct is a dict whose order is kept; every other dict is sorted. Pure.
"""
from __future__ import annotations

import json
from typing import Any


class Struct(dict):
    """A Go struct value: its fields keep their order when encoded."""


def dumps(value: Any) -> str:
    return "".join(_encode(value))


def _encode(value: Any):
    if isinstance(value, dict):
        items = value.items() if isinstance(value, Struct) else sorted(value.items())
        yield "{"
        for i, (k, v) in enumerate(items):
            if i:
                yield ","
            yield _string(str(k))
            yield ":"
            yield from _encode(v)
        yield "}"
    elif isinstance(value, (list, tuple)):
        yield "["
        for i, v in enumerate(value):
            if i:
                yield ","
            yield from _encode(v)
        yield "]"
    elif isinstance(value, str):
        yield _string(value)
    elif isinstance(value, bool) or value is None:
        yield json.dumps(value)
    elif isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        yield str(int(value))      # float64 1500 is written 1500
    else:
        yield json.dumps(value)


def _string(text: str) -> str:
    return (json.dumps(text, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def structs(value: Any) -> Any:
    """Every dict in `value` a Struct: a plugin's own output, decoded in order, encoded as it came."""
    if isinstance(value, dict):
        return Struct((k, structs(v)) for k, v in value.items())
    if isinstance(value, list):
        return [structs(v) for v in value]
    return value


def maps(value: Any) -> Any:
    """Every Struct in `value` a plain (sorted) dict, as after a decode into map[string]interface{}."""
    if isinstance(value, dict):
        return {k: maps(v) for k, v in value.items()}
    if isinstance(value, list):
        return [maps(v) for v in value]
    return value


# libcni's Result types (pkg/types/100 and 040), field order as declared.
_RESULT = ("cniVersion", "interfaces", "ips", "routes", "dns")
_INTERFACE = ("name", "mac", "mtu", "sandbox", "socketPath", "pciID")
_IP = ("version", "interface", "address", "gateway")
_ROUTE = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")
_DNS = ("nameservers", "domain", "search", "options")


def result_struct(raw: dict[str, Any]) -> Struct:
    """A cached result (a map) as the Result struct libcni decodes it into, in its field order."""
    def order(d: Any, fields: tuple[str, ...]) -> Any:
        if not isinstance(d, dict):
            return d
        return Struct([(k, d[k]) for k in fields if k in d] + [(k, v) for k, v in d.items() if k not in fields])

    out = order(raw, _RESULT)
    for key, fields in (("interfaces", _INTERFACE), ("ips", _IP), ("routes", _ROUTE)):
        if isinstance(out.get(key), list):
            out[key] = [order(x, fields) for x in out[key]]
    if "dns" in out:
        out["dns"] = order(out["dns"], _DNS)
    elif out.get("cniVersion"):
        out["dns"] = Struct()      # a struct field: encoded even when empty
    return out
