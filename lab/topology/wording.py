"""How problem messages quote what the user wrote, and word the fix they suggest.

A message shows the bad value as written (cut short), and where it can, the line that would
be right: quoted, unquoted, written as a list, or the known name it was probably meant to be.
"""
from __future__ import annotations

import difflib
import json
import re
import shlex
from typing import Any

import yaml
import yaml.resolver

from lab.topology.schema import Field

YAML_TAG = "tag:yaml.org,2002:"   # the prefix of YAML's standard tags


def show(value: Any, limit: int = 40) -> str:
    """A value as the user wrote it, cut short: names in messages may be megabytes of junk."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: Any) -> str:
    """What a value is, for 'must be a list, got ...'."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float, str)):
        kind = {int: "an integer", float: "a number", str: "a string"}[type(value)]
        return f"{kind} ({show(value)})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, bytes):
        return "binary data"
    return f"a {type(value).__name__} ({show(str(value))})"


def did_you_mean(word: str, known: list[str] | tuple[str, ...], cutoff: float = 0.6, ignore_case: bool = False) -> str:
    """The hint "did you mean 'x'? " naming the known word closest to a misspelt one; "" when none is close."""
    spelled = {k.lower() if ignore_case else k: k for k in known}
    close = difflib.get_close_matches(word.lower() if ignore_case else word, list(spelled), n=1, cutoff=cutoff)
    return f"did you mean '{spelled[close[0]]}'? " if close else ""


def unknown_key(key: str, schema: dict[str, Field]) -> str:
    allowed = list(schema)
    hint = did_you_mean(key, allowed, ignore_case=True)
    return f"unknown key {show(key)}; {hint}allowed here: {', '.join(allowed)}"


def type_hint(key: str, spec: Field, value: Any) -> str:
    """How to write the value so it has the right type."""
    if str in spec.types:
        return quote_hint(value, key)
    if int in spec.types and isinstance(value, str) and value.strip().isdigit():
        return f"; remove the quotes: {key}: {value.strip()}"
    if spec.types == (bool,) and isinstance(value, str):
        return f"; write {key}: true or {key}: false, without quotes"
    if list in spec.types and isinstance(value, str):
        items = _split_words(value)
        if 0 < len(items) <= 8:  # a hint, not a copy of a paragraph
            return f"; write a list: {key}: [{', '.join(_quote(w) for w in items)}]"
        return f"; write a list: {key}: [a, b]"
    return ""


def quote_hint(value: Any, key: str | None = None) -> str:
    """YAML reads 1.10, 3600 and yes as numbers and booleans; quoting keeps them as text."""
    if not isinstance(value, (int, float, bool)):
        return ""
    as_written = yaml.safe_dump(value).splitlines()[0]
    return f"; put it in quotes: {key + ': ' if key else ''}\"{as_written}\""


def _split_words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _quote(word: str) -> str:
    """A list item as YAML flow text: quoted unless YAML reads it back as this very string."""
    plain = (re.fullmatch(r"-?[A-Za-z_/.][\w./-]*", word)
             and yaml.resolver.Resolver().resolve(yaml.ScalarNode, word, (True, False)) == YAML_TAG + "str")
    return word if plain else json.dumps(word)  # a JSON string is a valid YAML double-quoted scalar
