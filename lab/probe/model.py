"""What is probed and what came back: endpoints, pairs and path results."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address

PROTOS = ("icmp", "http")


@dataclass(frozen=True)
class Endpoint:
    """Something that sends or receives: a pod, a node or an outside host."""
    name: str
    kind: str                        # "pod" | "node" | "outside"
    node: str | None                 # the pod's node; the node itself for nodes; None for outside hosts
    netns: str                       # namespace under /run/netns (hostNetwork pods: the node's)
    ip: IPv4Address
    http_port: int | None = None     # a port serving HTTP, if any
    http_expect: str | None = None   # text the page must contain
    clientip_port: int | None = None  # echo workload port answering GET /clientip, if any

    @property
    def serves_http(self) -> bool:
        return self.http_port is not None or self.clientip_port is not None

    @cached_property
    def address(self) -> str:
        """The address as text, made once: probes use it for every packet and every result."""
        return str(self.ip)


Pair = tuple[Endpoint, Endpoint, bool]   # (source, target, whether the network model requires the path)


@dataclass(frozen=True)
class PathResult:
    src: str
    dst: str
    proto: str                       # "icmp" | "http"
    ok: bool
    expected: bool                   # whether the network model requires this path to work
    seen_source: str | None          # the source address the receiver saw
    src_ip: str                      # the sender's address: seen_source must equal it (no NAT)
    rtt_ms: float | None
    error: str | None
    dst_ip: str = ""
    src_kind: str = "pod"
    src_node: str | None = None
    dst_kind: str = "pod"
    dst_node: str | None = None

    @property
    def nat(self) -> bool:
        return self.seen_source is not None and self.seen_source != self.src_ip

    @property
    def passed(self) -> bool:
        """An expected path must work without NAT; a path the model does not require is informational."""
        return (self.ok and not self.nat) if self.expected else True

    def to_json(self) -> dict:
        """The fields plus the verdicts, for `podlab check -o json` (dataclasses.asdict deep-copies: 10x slower)."""
        return {**self.__dict__, "passed": self.passed, "nat": self.nat}
