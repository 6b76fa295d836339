"""Network (and UTS) namespaces, made in-process.

`ip netns add` and pyroute2's `netns.create` fork a process per namespace (~6-8 ms each).
Here a helper thread calls unshare(2) once per namespace and bind-mounts its
/proc/thread-self/ns/net to /run/netns/NAME, exactly where `ip netns` looks, so the
namespaces are ordinary named namespaces afterwards. A namespace lives as long as that
mount (or a process inside it); the thread may exit.

The calling (main) thread never changes namespace: only helper threads do, and they
are discarded after, so the root network namespace cannot be touched by accident.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from lab import faults
from lab.netlink import wire

NETNS_DIR = "/run/netns"

CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000

_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")
NsId = tuple[int, int, int]   # (st_dev, st_ino, st_ctime_ns) of a namespace file


def _check(result: int, what: str, path: str = "") -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path or None)


def setns(fd: int, nstype: int) -> None:
    """setns(2) for the calling thread (os.setns needs Python 3.12)."""
    _check(_libc.setns(fd, nstype), "setns")


def in_helper_thread(fn: Callable[[], T], name: str) -> T:
    """fn() in a new thread that is discarded afterwards; its result returned, its exception
    raised here. The thread may change namespace (setns, unshare): the caller never does."""
    result: list[T] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # re-raised in the caller's thread
            failure.append(e)

    thread = threading.Thread(target=work, name=name)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _join(path: str, nstype: int) -> None:
    """Move the calling thread into the namespace mounted at path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        setns(fd, nstype)
    finally:
        os.close(fd)


def netns_path(name: str) -> str:
    # Names come from plans and journals; none may point outside /run/netns.
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid network namespace name {name!r}")
    return os.path.join(NETNS_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def _prepare_netns_dir() -> None:
    """Make /run/netns a shared mount point, as `ip netns add` does, so mounts propagate."""
    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    if _libc.mount(b"none", NETNS_DIR.encode(), None, MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        return  # not fatal: bind mounts below work without propagation
    _check(_libc.mount(NETNS_DIR.encode(), NETNS_DIR.encode(), b"none", MS_BIND | MS_REC, None),
           "bind-mount", NETNS_DIR)
    _check(_libc.mount(b"none", NETNS_DIR.encode(), None, MS_SHARED | MS_REC, None), "make-shared", NETNS_DIR)


class MountPoints:
    """The empty files namespaces are mounted on, made as hard links of one unnamed inode per
    directory (open(2) with O_TMPFILE) rather than as a new file each.

    Why: every new file allocates an inode, and on ext4 (where /run lives on some machines)
    an allocation scans past the inodes deleted in the last minutes: after a lab of a
    thousand pods went down, each of the next lab's two thousand mount points cost ~1 ms.
    A link allocates nothing (2,000 take ~20 ms). A mount is made on a name, not an inode,
    so each link carries a namespace of its own.

    `on_template(dev, ino)` is called once a template inode exists and before any link to it
    does: a caller that journals it can later tell a bare link left by a crash (between link
    and mount) from anybody else's file. Where a file system cannot (no O_TMPFILE, or the
    inode has as many links as it may hold), a file is created as before.
    """

    def __init__(self, on_template: Callable[[int, int], None] | None = None):
        self._on_template = on_template
        self._templates: dict[str, int | None] = {}   # directory -> its template's fd (None: cannot link)

    def make(self, target: str) -> None:
        """Make the empty file `target`; FileExistsError if the name is taken."""
        directory = os.path.dirname(target)
        if directory not in self._templates:
            self._templates[directory] = self._template(directory)
        fd = self._templates[directory]
        if fd is not None:
            # linkat(fd, "", AT_EMPTY_PATH) links the unnamed inode itself (root may).
            if _libc.linkat(fd, b"", AT_FDCWD, target.encode(), AT_EMPTY_PATH) == 0:
                return
            err = ctypes.get_errno()
            if err == errno.EEXIST:
                raise FileExistsError(err, os.strerror(err), target)
            self._templates[directory] = None   # before closing: close() must never see it again
            os.close(fd)
            # EMLINK: the template holds as many links as it may; start another. Otherwise
            # this file system cannot do it: plain files from now on.
            if err == errno.EMLINK:
                self._templates[directory] = self._template(directory)
                return self.make(target)
        os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))

    def _template(self, directory: str) -> int | None:
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o444)
        except OSError:
            return None
        try:
            if self._on_template:
                st = os.fstat(fd)
                self._on_template(st.st_dev, st.st_ino)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def close(self) -> None:
        for fd in self._templates.values():
            if fd is not None:
                os.close(fd)   # the inode lives on in its links; with none, the kernel frees it
        self._templates.clear()


def _bind(source: str, target: str, mount_points: MountPoints) -> None:
    mount_points.make(target)
    try:
        _check(_libc.mount(source.encode(), target.encode(), b"none", MS_BIND, None), "bind-mount", target)
    except OSError:
        os.unlink(target)
        raise


Sysctl = tuple[str, str, bool]    # key, value, and whether a missing key (its module not loaded) is fine

# Keys that are one setting under two names.
_SAME_SETTING = {"net.ipv4.ip_forward": "net.ipv4.conf.all.forwarding"}
_INHERIT = "/proc/sys/net/core/devconf_inherit_init_net"


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


class SysctlWriter:
    """Writes each new namespace's settings, skipping writes that would change nothing.

    Every namespace a lab makes starts with the same values: the root namespace's IPv4 conf/all
    and conf/default, or the kernel's defaults (devconf_inherit_init_net 0 or 2); those are read
    once, in the first fresh namespace that has a key. Most of a namespace's baseline then costs
    no write at all: 1000 pods times two dozen settings would otherwise be ~0.2 s of syscalls.
    Where a namespace inherits from the one that made it (1, 3) every setting is written.
    """

    def __init__(self) -> None:
        try:
            with open(_INHERIT) as f:
                self.shared_start = f.read().strip() in ("0", "2")
        except OSError:
            self.shared_start = False
        self.start: dict[str, str | None] = {}

    def apply(self, settings: list[Sysctl]) -> None:
        """In a namespace just made (nothing written to it yet)."""
        canonical = [(_SAME_SETTING.get(k, k), v, optional) for k, v, optional in settings]
        if self.shared_start:
            for key, _, _ in canonical:
                if key not in self.start:
                    self.start[key] = _read_sysctl(key)
        now = dict(self.start) if self.shared_start else {}
        for key, value, optional in canonical:
            if now.get(key) == value:
                continue
            try:
                fd = os.open(_sysctl_path(key), os.O_WRONLY)
            except FileNotFoundError:
                if optional:
                    continue
                raise
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
            now[key] = value
            if key == "net.ipv4.conf.all.forwarding":   # the kernel sets conf/default's with it
                now["net.ipv4.conf.default.forwarding"] = value


def _read_sysctl(key: str) -> str | None:
    try:
        with open(_sysctl_path(key)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


class Created:
    """A namespace just made: its fd (to place links into it) and a netlink socket inside it."""

    def __init__(self, name: str, fd: int, nl: socket.socket, max_index: int | None):
        # max_index: the highest ifindex the kernel made on its own (lo, and any fallback
        # tunnel devices a kernel adds to every namespace), so new links can be numbered after it;
        # None for a namespace that was already there (lab.engine.apply.change).
        self.name, self.fd, self.nl, self.max_index = name, fd, nl, max_index

    def close(self) -> None:
        self.nl.close()
        os.close(self.fd)


def create(specs: list[tuple[str, str, str]], sysctls: dict[str, list[Sysctl]],
           on_created: Callable[[str, NsId, NsId], None] | None = None,
           on_mount_point: Callable[[int, int], None] | None = None) -> dict[str, Created]:
    """Create namespaces from (name, hostname, uts_mount_path) specs, without forking.

    `sysctls[name]` are written from inside each new namespace. `on_created(name, net_id,
    uts_id)` is called once each namespace exists but before it is mounted (named): until
    then it dies with the thread, so a caller that journals the identity there has a record
    of everything that can outlive a crash, and can later tell its namespace from another
    program's namespace of the same name. `on_mount_point(dev, ino)`: see MountPoints.
    """
    _prepare_netns_dir()
    mount_points = MountPoints(on_mount_point)
    writer = SysctlWriter()
    made: dict[str, Created] = {}

    def work() -> None:
        for name, hostname, uts_path in specs:
            _check(_libc.unshare(CLONE_NEWNET | CLONE_NEWUTS), "unshare", name)
            host = hostname.encode()[:64]
            _check(_libc.sethostname(host, len(host)), "sethostname", name)
            path = netns_path(name)
            # Held open until mounted, so the identity read here is the one the mount shows.
            net_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            uts_fd = os.open("/proc/thread-self/ns/uts", os.O_RDONLY)
            try:
                if on_created:
                    on_created(name, _fd_id(net_fd), _fd_id(uts_fd))
                _bind("/proc/thread-self/ns/net", path, mount_points)
                faults.point("netns mounted")
                os.makedirs(os.path.dirname(uts_path), mode=0o700, exist_ok=True)
                _bind("/proc/thread-self/ns/uts", uts_path, mount_points)
            finally:
                os.close(net_fd)
                os.close(uts_fd)
            writer.apply(sysctls.get(name, []))
            nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, wire.NETLINK_ROUTE)
            max_index = max(i for i, _ in socket.if_nameindex())
            made[name] = Created(name, os.open(path, os.O_RDONLY), nl, max_index)

    try:
        in_helper_thread(work, "podlab-netns")
    except BaseException:
        for c in made.values():
            c.close()
        raise
    finally:
        mount_points.close()
    return made


def _fd_id(fd: int) -> NsId:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


def identity(path: str) -> NsId | None:
    """What a namespace file refers to now: (dev, inode, ctime), or None if nothing is there.

    A namespace's inode number is unique only while it exists (the kernel recycles them);
    the inode's ctime, fixed while the namespace is mounted, tells a recycled number apart.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


def _unmount_and_unlink(path: str) -> None:
    _libc.umount2(path.encode(), MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_owned(name: str, ident: NsId | None, made_at: float | None = None,
                 mount_inodes: frozenset[tuple[int, int]] | set[tuple[int, int]] = frozenset()) -> str:
    """Remove /run/netns/NAME only if it is the namespace whose identity was recorded.

    Returns "removed", "absent" or "foreign". Without an identity (recorded as intended but
    never made, e.g. `up` was killed first) nothing is ever removed: a namespace of that name
    belongs to someone else. An empty, unmounted file there (a crash between making the mount
    point and mounting on it) is ours if it is a link of one of the lab's recorded mount-point
    inodes (MountPoints), or, made as a file of its own, if its creation time matches the record.
    """
    path = netns_path(name)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "absent"
    if ident is None:
        return "foreign"
    if (st.st_dev, st.st_ino, st.st_ctime_ns) == tuple(ident):
        _unmount_and_unlink(path)
        return "removed"
    parent = os.stat(NETNS_DIR)
    bare = st.st_dev == parent.st_dev and st.st_size == 0 and os.path.isfile(path) and not os.path.ismount(path)
    linked = (st.st_dev, st.st_ino) in mount_inodes
    if bare and (linked or (made_at is not None and made_at - 1 <= st.st_ctime <= made_at + 2)):
        os.unlink(path)
        return "removed"
    return "foreign"


def remove_mount(path: str) -> bool:
    """Unmount and unlink a mount point inside a lab's own state directory. True if it existed."""
    if not os.path.lexists(path):
        return False
    _unmount_and_unlink(path)
    return True


def remove(name: str, uts_path: str | None = None) -> bool:
    """Unmount and unlink a namespace (and its UTS mount). True if it existed."""
    existed = False
    for path in (netns_path(name), uts_path):
        if path and os.path.lexists(path):
            existed = True
            _libc.umount2(path.encode(), MNT_DETACH)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    return existed


def run_in(name: str, fn: Callable[[], T], uts_path: str | None = None) -> T:
    """Run fn() in a helper thread that has joined namespace `name` (and its UTS).

    Sockets fn() opens stay in that namespace after the thread ends.
    """
    def work() -> T:
        _join(netns_path(name), CLONE_NEWNET)
        if uts_path:
            _join(uts_path, CLONE_NEWUTS)
        return fn()
    return in_helper_thread(work, f"podlab-in-{name}")


def run_in_each(jobs: list[tuple[str, Callable[[], T]]]) -> list[T | OSError]:
    """Run each (namespace, fn) job inside its namespace, all in one helper thread.

    A thread per namespace costs 0.5-1 ms (start, join, exit); moving one thread on to the
    next namespace costs ~10 us, which is what makes serving 1000 pods start quickly. An
    OSError (the namespace is gone, a port is taken) is returned in that job's place; any
    other exception is raised.
    """
    def work() -> list[T | OSError]:
        results: list[T | OSError] = []
        for name, fn in jobs:
            try:
                _join(netns_path(name), CLONE_NEWNET)
                results.append(fn())
            except OSError as e:
                results.append(e)
        return results
    return in_helper_thread(work, "podlab-in-each")


def socket_in(name: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket that lives in namespace `name` (sockets keep the namespace they were made in)."""
    return run_in(name, lambda: socket.socket(family, kind, proto))
