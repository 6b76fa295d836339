"""A client for BIRD's control socket, the one `birdc` talks to.

BIRD's protocol (sysdep/unix/main.c, nest/cli.c, client/client.c): on connect BIRD greets with
`0001 BIRD 2.0.12 ready.`; a command is one line; every reply line starts with a four-digit
code and `-` while more lines follow, or ` ` on the reply's last line (`0000 ` is "done", 8xxx
a runtime error, 9xxx a parse error). A line that starts with a space continues the code of the
line before it (BIRD writes the code only when it changes), and a line starting with `+` is an
asynchronous message, not part of any reply. Codes used below: 2002 the protocol table's
heading, 1002 one protocol's row, 1006 its details (`show protocols all`), 1007 a route's first
line and, on lines of their own starting with a tab, its next hops (`show route`).
"""
from __future__ import annotations

import re
import socket
from dataclasses import dataclass

TIMEOUT = 5.0


class BirdError(Exception):
    """BIRD answered a command with an error (code 8xxx or 9xxx), or the socket failed."""


@dataclass(frozen=True)
class Line:
    code: int
    text: str


@dataclass(frozen=True)
class Protocol:
    """One row of `show protocols`, with what `show protocols all` adds for BGP."""
    name: str
    proto: str          # BGP, Kernel, Device, Direct, Static
    table: str          # master4, or --- for a protocol without a channel
    state: str          # up, start, down, ...
    since: str
    info: str           # for BGP the session state, e.g. "Established", "Active", "Connect",
                        # then any message: "Active        Socket: Connection refused"
    neighbor: str | None = None
    imported: int | None = None
    exported: int | None = None
    last_error: str | None = None
    local_as: int | None = None     # BGP: the AS this BIRD speaks as on the session

    @property
    def bgp_state(self) -> str:
        """A BGP session's state, the first word of info ("" for other protocols)."""
        return self.info.split(" ", 1)[0] if self.proto == "BGP" else ""


@dataclass(frozen=True)
class Route:
    """One route of `show route`: e.g. 192.168.0.64/26 unicast from Mesh_10_0_0_3 via 10.0.0.3."""
    net: str
    kind: str           # unicast, blackhole, unreachable, prohibit
    proto: str
    since: str
    primary: bool       # BIRD's `*`: the route it selected for the net
    via: tuple[str, ...] = ()
    dev: str | None = None


# -- the wire -----------------------------------------------------------------------------

def parse_lines(raw: str) -> list[Line]:
    """The reply lines of `raw`, every one with its code (continuations inherit it); BIRD's
    asynchronous `+` messages are dropped."""
    out: list[Line] = []
    for text in raw.splitlines():
        if text.startswith("+"):
            continue
        if text.startswith(" ") or text.startswith("\t"):
            out.append(Line(out[-1].code if out else 0, text[1:]))
        elif len(text) >= 5 and text[:4].isdigit() and text[4] in " -":
            out.append(Line(int(text[:4]), text[5:]))
        elif len(text) == 4 and text.isdigit():
            out.append(Line(int(text), ""))
        else:
            raise BirdError(f"unexpected line from BIRD: {text!r}")
    return out


def reply_complete(raw: str) -> bool:
    """True once `raw` holds a whole reply: its last whole line's code is followed by a space."""
    if not raw.endswith("\n"):
        return False
    last = [t for t in raw.splitlines() if not t.startswith("+")][-1:]
    return bool(last) and len(last[0]) >= 5 and last[0][:4].isdigit() and last[0][4] == " "


def check(lines: list[Line]) -> list[Line]:
    """`lines`, unless the reply ended in an error: then BirdError with BIRD's message."""
    errors = [ln for ln in lines if ln.code >= 8000]
    if errors:
        raise BirdError(f"BIRD error {errors[0].code}: {errors[0].text.strip()}")
    return lines


def command(sock_path: str, cmd: str, *, timeout: float = TIMEOUT) -> list[Line]:
    """Send one command to the BIRD behind `sock_path`; its reply's lines."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            _read_reply(s)                       # the greeting, 0001 BIRD ... ready.
            s.sendall(cmd.encode() + b"\n")
            return check(parse_lines(_read_reply(s)))
    except OSError as e:
        raise BirdError(f"BIRD control socket {sock_path}: {e}") from e


def _read_reply(s: socket.socket) -> str:
    data = b""
    while not reply_complete(data.decode(errors="replace")):
        chunk = s.recv(65536)
        if not chunk:
            raise BirdError("BIRD closed the control socket mid-reply")
        data += chunk
    return data.decode(errors="replace")


# -- show protocols -----------------------------------------------------------------------

_SINCE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}$")
_ROUTES = re.compile(r"Routes:\s+(\d+) imported, (?:(\d+) filtered, )?(\d+) exported")


def parse_protocols(lines: list[Line]) -> list[Protocol]:
    """The protocols of a `show protocols` or `show protocols all` reply."""
    rows: list[dict] = []
    for ln in lines:
        if ln.code == 1002:
            rows.append(_protocol_row(ln.text))
        elif ln.code == 1006 and rows:
            _protocol_detail(rows[-1], ln.text.strip())
    return [Protocol(**r) for r in rows]


def _protocol_row(text: str) -> dict:
    fields = text.split(None, 4)
    if len(fields) < 5:
        raise BirdError(f"unexpected protocol row from BIRD: {text!r}")
    name, proto, table, state, rest = fields
    since, _, info = rest.partition(" ")
    if _SINCE_DATE.match(since):                 # a long time format: "2024-01-31 10:00:00"
        clock, _, info = info.lstrip().partition(" ")
        since = f"{since} {clock}"
    # info keeps BIRD's inner spacing (BGP pads its state to 14: "Active        Socket: ...")
    return {"name": name, "proto": proto, "table": table, "state": state, "since": since,
            "info": info.strip()}


def _protocol_detail(row: dict, text: str) -> None:
    key, _, value = text.partition(":")
    value = value.strip()
    if key == "Neighbor address":
        row["neighbor"] = value
    elif key == "Last error":
        row["last_error"] = value
    elif key == "Local AS" and value.isdigit():
        row["local_as"] = int(value)
    elif m := _ROUTES.match(text):
        row["imported"], row["exported"] = int(m.group(1)), int(m.group(3))


def protocols(sock_path: str) -> list[Protocol]:
    """Every protocol of the BIRD behind `sock_path`, BGP ones with their route counts."""
    return parse_protocols(command(sock_path, "show protocols all"))


# -- show route ---------------------------------------------------------------------------

_ROUTE_HEAD = re.compile(r"(?:(?P<net>\S+)\s+)?(?P<kind>unicast|blackhole|unreachable|prohibit)\s+"
                         r"\[(?P<proto>\S+) (?P<since>[^\]]+?)(?: from \S+)?\]\s+(?P<primary>\*)?")
_NEXT_HOP = re.compile(r"\s*(?:via (?P<via>\S+) )?(?:on|dev) (?P<dev>\S+)")


def parse_routes(lines: list[Line]) -> list[Route]:
    """The routes of a `show route` reply (a route line without a net belongs to the net above)."""
    out: list[dict] = []
    net = ""
    for ln in lines:
        if ln.code != 1007:
            continue                             # 1008 and 1012: `show route all`'s attributes
        if ln.text.startswith("\t"):             # a next hop of the route above
            if out and (m := _NEXT_HOP.match(ln.text)):
                if m["via"]:
                    out[-1]["via"] += (m["via"],)
                out[-1]["dev"] = m["dev"]
        elif m := _ROUTE_HEAD.match(ln.text.strip()):
            net = m["net"] or net
            out.append({"net": net, "kind": m["kind"], "proto": m["proto"], "since": m["since"],
                        "primary": bool(m["primary"]), "via": (), "dev": None})
    return [Route(**r) for r in out]


def routes(sock_path: str) -> list[Route]:
    """The routes in the master table of the BIRD behind `sock_path`."""
    return parse_routes(command(sock_path, "show route"))
