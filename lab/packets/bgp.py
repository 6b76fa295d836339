"""The BGP messages a TCP segment to or from port 179 carries, one phrase each (scapy.contrib.bgp
dissects every message):

  BGP OPEN AS 64512 hold 240 id 172.18.0.2
  BGP UPDATE withdrawn 192.168.1.0/26 nlri 192.168.2.0/26 192.168.3.0/26 next-hop 172.18.0.3
  BGP UPDATE nlri 10.0.0.0/24 as-path 64513 {64514 64515} next-hop 10.1.0.1
  BGP UPDATE end-of-rib; KEEPALIVE
  BGP NOTIFICATION Cease / Administrative Shutdown

TCP is a byte stream: one segment may hold several messages (BIRD writes its UPDATEs, then a
KEEPALIVE, in one go; a GSO super-frame holds dozens), or the tail of one begun in the segment
before. scapy's TCP binding would read a second message as the first one's NLRI, so the
messages are cut apart here by the length in each header, and each is dissected on its own.
"""
from __future__ import annotations

import functools
import logging
import struct
from typing import Any

PORT = 179
MARKER = b"\xff" * 16
HEADER = 19                     # marker, length, type
MAX_LENGTH = 4096               # RFC 4271 (BIRD does not negotiate RFC 8654's extended messages)
MESSAGES_SHOWN = 6
PREFIXES_SHOWN = 8
TYPES = {1: "OPEN", 2: "UPDATE", 3: "NOTIFICATION", 4: "KEEPALIVE", 5: "ROUTE-REFRESH"}
CAP_FOUR_OCTET_AS = 65
ATTR_AS_PATH, ATTR_NEXT_HOP = 2, 3
AS_SET = 1


@functools.cache
def _bgp() -> Any:
    from scapy.error import log_runtime
    # The module logs its ASN setting as a warning on import: a capture's output is no place for it.
    level = log_runtime.level
    log_runtime.setLevel(logging.ERROR)
    try:
        from scapy.contrib import bgp
    finally:
        log_runtime.setLevel(level)
    # BIRD, like every current speaker, announces 4-octet AS numbers (RFC 6793); once both ends
    # have, AS_PATH carries 4 bytes per AS. scapy's default reads 2, as an old speaker would.
    bgp.bgp_module_conf.use_2_bytes_asn = False
    return bgp


def summary(payload: bytes) -> str:
    """'BGP KEEPALIVE', 'BGP UPDATE nlri ...; KEEPALIVE', ...: the messages in a segment's payload."""
    phrases = []
    rest = payload
    start = rest.find(MARKER)
    # A message's last bytes may be 0xff too: the marker is the last 16 of the run (a length's
    # first byte is at most 0x10).
    while 0 <= start and start + len(MARKER) < len(rest) and rest[start + len(MARKER)] == 0xFF:
        start += 1
    if start != 0:
        # the tail of a message from an earlier segment (or no message boundary in this one at all)
        phrases.append(f"({len(rest) if start < 0 else start} bytes continuing a message)")
        rest = b"" if start < 0 else rest[start:]
    shown = 0
    while rest:
        if len(rest) < HEADER:
            phrases.append(f"(first {len(rest)} bytes of a message)")
            break
        length, kind = struct.unpack_from("!HB", rest, 16)
        name = TYPES.get(kind, f"type {kind}")
        if not rest.startswith(MARKER) or not HEADER <= length <= MAX_LENGTH:
            phrases.append(f"malformed header (length {length})")
            break
        if length > len(rest):
            phrases.append(f"{name} (first {len(rest)} of {length} bytes)")
            break
        if shown < MESSAGES_SHOWN:
            phrases.append(message(rest[:length]))
        shown += 1
        rest = rest[length:]
    if shown > MESSAGES_SHOWN:
        phrases.append(f"(+{shown - MESSAGES_SHOWN} more messages)")
    return "BGP " + "; ".join(phrases)


def message(raw: bytes) -> str:
    """One whole message (header included), as a phrase."""
    b = _bgp()
    kind = raw[18]
    try:
        msg = b.BGPHeader(raw)
    except Exception:      # scapy raises many kinds on a damaged message; a capture goes on
        return f"{TYPES.get(kind, f'type {kind}')} (undecodable)"
    if msg.haslayer(b.BGPOpen):
        return _open(msg[b.BGPOpen], b)
    if msg.haslayer(b.BGPUpdate):
        return _update(msg[b.BGPUpdate], b)
    if msg.haslayer(b.BGPNotification):
        return _notification(msg[b.BGPNotification])
    if kind in (1, 2, 3):       # scapy left the body raw: too short for its fields
        return f"{TYPES[kind]} (undecodable)"
    return TYPES.get(kind, f"type {kind}")


def _open(msg: Any, b: Any) -> str:
    asn = msg.my_as
    for param in msg.opt_params or []:
        cap = param.param_value
        if isinstance(cap, b.BGPCapFourBytesASN):
            asn = cap.asn          # my_as is AS_TRANS (23456) when the AS needs 4 bytes
    return f"OPEN AS {asn} hold {msg.hold_time} id {msg.bgp_id}"


def _prefixes(nlri: list[Any]) -> str:
    shown = " ".join(str(n.prefix) for n in nlri[:PREFIXES_SHOWN])
    more = len(nlri) - PREFIXES_SHOWN
    return shown + (f" (+{more} more)" if more > 0 else "")


def _update(msg: Any, b: Any) -> str:
    withdrawn, nlri, attrs = msg.withdrawn_routes or [], msg.nlri or [], msg.path_attr or []
    if not (withdrawn or nlri or attrs):
        return "UPDATE end-of-rib"          # RFC 4724's marker: the initial routes are all sent
    parts = ["UPDATE"]
    if withdrawn:
        parts.append(f"withdrawn {_prefixes(withdrawn)}")
    if nlri:
        parts.append(f"nlri {_prefixes(nlri)}")
    path = _as_path(attrs, b)
    if path:
        parts.append(f"as-path {path}")       # empty between iBGP peers (Calico's mesh)
    hop = next((a.attribute.next_hop for a in attrs
                if a.type_code == ATTR_NEXT_HOP and isinstance(a.attribute, b.BGPPANextHop)), None)
    if hop is not None:
        parts.append(f"next-hop {hop}")
    if not (withdrawn or nlri):
        names = ", ".join(a.get_field("type_code").i2repr(a, a.type_code) for a in attrs)
        parts.append(f"attributes {names}")
    return " ".join(parts)


def _as_path(attrs: list[Any], b: Any) -> str:
    """'64513 {64514 64515}': sequences as they are, sets in braces."""
    for a in attrs:
        if a.type_code == ATTR_AS_PATH and isinstance(a.attribute, (b.BGPPAAS4BytesPath, b.BGPPAASPath)):
            segments = []
            for seg in a.attribute.segments or []:
                numbers = " ".join(str(n) for n in seg.segment_value or [])
                segments.append(f"{{{numbers}}}" if seg.segment_type == AS_SET else numbers)
            return " ".join(x for x in segments if x)
    return ""


def _notification(msg: Any) -> str:
    text = f"NOTIFICATION {_named(msg, 'error_code', 'code')}"
    subcode = _named(msg, "error_subcode", "subcode")
    # Subcode 0 of a code that has none (Hold Timer Expired, FSM Error) says nothing more.
    return text if subcode == "subcode 0" else f"{text} / {subcode}"


def _named(msg: Any, field: str, word: str) -> str:
    """scapy's name for a code (RFC 4271, 4486, 8203 ...), or 'code 42' for one it does not know."""
    value = getattr(msg, field)
    name = msg.get_field(field).i2repr(msg, value)
    return f"{word} {value}" if name == str(value) else name
