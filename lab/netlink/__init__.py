"""podlab's netlink, with struct and plain sockets, in one place.

- wire.py    constants, struct layouts, attributes packed and read, message framing
- writer.py  batched requests that build a lab (lab.engine), with what EEXIST means per request
- dump.py    dumps read back for lab.inspect: links, addresses, routes, neighbours, FDB, nft tables
- query.py   `route get` and RTM_GETNSID on one socket per namespace (lab.packets' walks)

Each of dump, query and writer imports wire only, so reading a namespace never loads the
writer. Nothing is imported here: `import lab.netlink.dump` stays as light as dump itself.
"""
