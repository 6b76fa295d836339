"""A classic pcap file (the format `tcpdump -w` writes): a global header, then one record per frame.

Every lab interface is Ethernet-framed (veth, bridge, vxlan, and lo in Linux), so one link
type serves all of them; the file is read by `tcpdump -r`, Wireshark and scapy alike.
"""
from __future__ import annotations

import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from lab.errors import PodlabError

MAGIC = 0xA1B2C3D4          # microsecond timestamps, native byte order
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144


class PcapWriter:
    def __init__(self, path: str | Path, snaplen: int = SNAPLEN):
        self.path = Path(path)
        self.snaplen = snaplen
        self.count = 0
        try:
            self._f: BinaryIO = open(self.path, "wb")
        except OSError as e:
            raise PodlabError(f"-w {path}: cannot write the capture file ({e.strerror}); "
                              f"pick a writable path") from None
        self._f.write(struct.pack("=IHHiIII", MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))

    def write(self, timestamp: float, data: bytes, orig_len: int | None = None) -> None:
        seconds = int(timestamp)
        micros = int(round((timestamp - seconds) * 1e6))
        if micros >= 1_000_000:
            seconds, micros = seconds + 1, micros - 1_000_000
        data = data[:self.snaplen]
        self._f.write(struct.pack("=IIII", seconds, micros, len(data), max(orig_len or 0, len(data))))
        self._f.write(data)
        self.count += 1

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read(path: str | Path) -> list[tuple[float, bytes]]:
    """(timestamp, frame) records of a pcap file this module wrote (used by tests and tools)."""
    raw = Path(path).read_bytes()
    magic = struct.unpack_from("=I", raw, 0)[0]
    if magic != MAGIC:
        raise ValueError(f"{path}: not a native-endian microsecond pcap file")
    offset, out = 24, []
    while offset + 16 <= len(raw):
        sec, usec, incl, _orig = struct.unpack_from("=IIII", raw, offset)
        offset += 16
        out.append((sec + usec / 1e6, raw[offset:offset + incl]))
        offset += incl
    return out
