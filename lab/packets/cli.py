"""`podlab capture | trace | explain | mtu`: the packet tools' subcommands (a lab.cli extension).

Handlers import the tools (and through them, for capture filters and unusual frames, scapy) only
when they run, so `podlab --help` stays fast.
"""
from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from typing import Any, Callable, TextIO

from lab.cliopts import lab_option

NEEDS_ROOT = {"capture", "trace", "explain", "mtu"}
Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text}: give more than 0 and at most 3600 seconds")
    return value


def _probe_flags(sp: argparse.ArgumentParser, size: bool = True) -> None:
    sp.add_argument("--proto", choices=["icmp", "tcp", "udp"], default="icmp", help="the probe's protocol")
    sp.add_argument("--port", type=_positive_int, help="TCP/UDP destination port (default: tcp 80, udp 8081)")
    if size:
        sp.add_argument("--size", type=_positive_int, metavar="BYTES",
                        help="the probe's IP total length (default: 84 for ICMP, as ping sends)")


def register(sub: Any) -> dict[str, Handler]:
    sp = sub.add_parser("capture", help="decoded packets on any interface of a lab namespace, live; "
                        "-w writes a pcap file")
    sp.add_argument("target", metavar="TARGET[:IFACE]",
                    help="a pod, node, outside host, 'underlay' or 'router'; all its interfaces unless one is named")
    sp.add_argument("-f", "--filter", metavar="FILTER", help="tcpdump filter, e.g. 'icmp or udp port 8472'")
    sp.add_argument("-c", "--count", type=_positive_int, help="stop after this many packets")
    sp.add_argument("-w", "--write", metavar="FILE.pcap", help="also write the packets to a pcap file")
    sp.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="stop after this long")
    sp.add_argument("-o", "--output", choices=["text", "json"], default="text",
                    help="json: one object per packet and line")
    lab_option(sp)

    sp = sub.add_parser("trace", help="send one marked probe SRC -> DST and show every hop, each namespace's "
                        "decision, and where and why it stops")
    sp.add_argument("src", help="pod, node or outside host (name or address)")
    sp.add_argument("dst", help="pod, node or outside host (name or address)")
    _probe_flags(sp)
    sp.add_argument("--timeout", type=_seconds, default=2.0, metavar="SECONDS",
                    help="how long to wait for the probe and its answer (default 2)")
    sp.add_argument("-o", "--output", choices=["text", "json"], default="text")
    lab_option(sp)

    sp = sub.add_parser("explain", help="walk SRC -> DST with the kernel's own lookups, sending nothing")
    sp.add_argument("src", help="pod, node or outside host (name or address)")
    sp.add_argument("dst", help="pod, node or outside host (name or address), or any address")
    _probe_flags(sp)
    sp.add_argument("-o", "--output", choices=["text", "json"], default="text")
    lab_option(sp)

    sp = sub.add_parser("mtu", help="the largest DF packet that crosses SRC -> DST, and the link that limits it")
    sp.add_argument("src", help="pod, node or outside host (name or address)")
    sp.add_argument("dst", help="pod, node or outside host (name or address)")
    sp.add_argument("--timeout", type=_seconds, default=0.3, metavar="SECONDS",
                    help="how long one round of probes waits for answers (default 0.3)")
    sp.add_argument("-o", "--output", choices=["text", "json"], default="text")
    lab_option(sp)
    return {"capture": cmd_capture, "trace": cmd_trace, "explain": cmd_explain, "mtu": cmd_mtu}


def format_line(line: Any) -> str:
    seconds, micros = divmod(round(line.time * 1e6), 1_000_000)     # rounded as the pcap file has it
    stamp = time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{micros:06d}"
    return f"{stamp} {line.iface:<14} {line.direction:<3} {line.text}"


def _terminate_as_interrupt() -> Callable[[], None]:
    """SIGTERM (`timeout`, `kill`) ends a capture like Ctrl-C does: count printed, file complete."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)
    return restore


def cmd_capture(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api
    from lab.packets import capture, pcap

    lab = api.pick(args.lab)
    name, iface = capture.split_target(args.target)
    target = lab.target(name)
    stop = threading.Event()
    timer = threading.Timer(args.timeout, stop.set) if args.timeout else None
    lines = capture.stream(lab, target.name, iface, args.filter, stop)
    try:
        writer = pcap.PcapWriter(args.write) if args.write else None
    except BaseException:
        lines.close()
        raise
    count = 0
    restore = _terminate_as_interrupt()
    print(f"capturing on {target.kind} {target.name}, {iface or 'all interfaces'} (netns {target.netns})"
          f"{'; filter ' + repr(args.filter) if args.filter else ''}; Ctrl-C stops", file=err, flush=True)
    try:
        if timer:
            timer.start()
        for line in lines:
            count += 1
            if writer:
                writer.write(line.time, line.raw)
                writer.flush()          # the file is usable while the capture runs, as tcpdump -U
            if args.output == "json":
                print(json.dumps({"time": line.time, "netns": line.netns, "iface": line.iface,
                                  "direction": line.direction, "text": line.text, "length": len(line.raw)}),
                      file=out, flush=True)
            else:
                print(format_line(line), file=out, flush=True)
            if args.count and count >= args.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        lines.close()
        restore()
        if timer:
            timer.cancel()
        if writer:
            writer.close()
    print(f"{count} packet{'s' if count != 1 else ''} captured"
          + (f", written to {args.write}" if writer else ""), file=err)
    return 0


def cmd_trace(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api
    from lab.packets.trace import trace

    result = trace(api.pick(args.lab), args.src, args.dst, proto=args.proto, port=args.port, size=args.size,
                   timeout=args.timeout)
    print(json.dumps(result.to_dict(), indent=2) if args.output == "json" else result.text(), file=out)
    return 0 if result.verdict == "delivered" and not result.reason else 1


def cmd_explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api
    from lab.packets.explain import explain

    result = explain(api.pick(args.lab), args.src, args.dst, proto=args.proto, port=args.port, size=args.size)
    print(json.dumps(result.to_dict(), indent=2) if args.output == "json" else result.text(), file=out)
    return 0 if result.verdict == "delivered" and not result.reason else 1


def cmd_mtu(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lab import api
    from lab.packets.mtu import path_mtu

    result = path_mtu(api.pick(args.lab), args.src, args.dst, timeout=args.timeout)
    print(json.dumps(result.to_dict(), indent=2) if args.output == "json" else result.text(), file=out)
    return 0 if result.largest is not None else 1
