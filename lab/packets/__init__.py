"""Packet-level tools: capture, trace, explain and path MTU, over the lab's real namespaces.

- frames.py    struct-level parsing of Ethernet/IPv4/VXLAN frames, probe building and marks (hot path)
- decode.py    one readable line per frame (VXLAN: inner and outer headers), with struct for the
               frames a lab carries; dissect.py: scapy's dissection for everything else
- capture.py   AF_PACKET sockets made inside lab namespaces, BPF filters; `stream()` for the CLI and TUI
- pcap.py      a pcap file writer that `tcpdump -r` and Wireshark read
- view.py      what a walk asks the kernel (LiveView: lab.inspect, and lab.netlink.query's `route get`
               and RTM_GETNSID), or snapshots (SnapshotView, for tests)
- walk.py      the path walk: hops, decisions, where and why a packet stops; l2.py: who is beyond a link
- nft.py       would an nft rule drop this packet
- explain.py   the walk without sending anything
- trace.py     one marked probe, watched on every interface, ordered by capture time; verdict.py judges it
- mtu.py       the largest DF packet that crosses, and the link that limits it
- endpoints.py SRC/DST and probe arguments; result.py the Decoded, Hop and Trace data; cli.py the four commands
"""
