"""A container's own view of the files: its pod's volumes bind-mounted at their mountPaths, in a
private mount namespace made for it, without creating anything on the host's filesystem.

A real container has a root filesystem of its own (its image plus a writable layer), and the
runtime makes a missing mountPath there. A podlab container sees the host's files, and a mountPath
such as /usr/share/nginx/html is usually missing on the host. Making it there would change the host
for every process, and leave a directory behind. So the missing part is made in a writable layer of
the container's own, as a container runtime's is made: an overlayfs on the nearest directory that
exists (the "root" of the missing part: /usr/share), whose upper and work directories are in the
lab's state directory, mounted only in the container's private mount namespace. The directory made
in it (nginx/html) lands in that upper directory, the host's /usr/share never sees it, and it goes
with the pod's directory (lab.workloads.volumes).

A tmpfs on /usr/share would do as a mount point, but would hide what /usr/share holds; an overlay
shows it unchanged. An overlay's lower layer is one filesystem: the mounts below its root (/proc,
/dev, /run/netns below /) would be hidden, so each is bind-mounted again (recursively) into the
overlay before it takes the root's place. The overlay is put together on a staging directory, then
moved over its root, so every source path is resolved in the host's view, before anything hides it;
a root of / cannot be moved over (a process's root does not follow mounts), so there the program is
chroot'ed into the staged overlay instead.

The steps run as `sh -c SCRIPT` after `unshare --mount --propagation private` (lab.engine.nsexec):
the paths are arguments of a fixed script, never part of it. Pure planning here (plan); the host's
state it needs (which paths exist, where the mount points are) comes from a Host, so tests give one.

Stdlib only: the workload agent imports it.
"""
from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# Each step is a verb and its paths, consumed from the arguments; "--" ends them, the program follows.
# -n: mount records nothing in the host's files (mtab, utab) about mounts only this namespace has.
SCRIPT = r'''root=
while [ "$1" != -- ]; do
  case $1 in
    overlay) mount -n -t overlay overlay -o "lowerdir=$2,upperdir=$3,workdir=$4" "$5" || exit; shift 5 ;;
    mkdir) mkdir -p "$2" || exit; shift 2 ;;
    touch) [ -e "$2" ] || : > "$2" || exit; shift 2 ;;
    bind) mount -n --bind "$2" "$3" || exit; shift 3 ;;
    rbind) mount -n --rbind "$2" "$3" || exit; shift 3 ;;
    ro) mount -n -o remount,bind,ro "$2" || exit; shift 2 ;;
    move) mount -n --move "$2" "$3" || exit; shift 3 ;;
    root) root=$2; shift 2 ;;
    *) echo "podlab mount script: unknown step $1" >&2; exit 2 ;;
  esac
done
shift
if [ -n "$root" ]; then exec chroot "$root" "$@"; fi
exec "$@"'''

# overlayfs splits its options at ',' and its lower layers at ':'; mount(8) takes no newline.
_UNSAFE = re.compile(r"[,:\\\n\0]")


def mount_path_problem(path: str) -> str | None:
    """Why `path` cannot be a volume's mountPath, or None: an absolute path other than /, with no
    '..' element (as Kubernetes checks), nor ':' or ',' (overlayfs's option syntax), nor control
    characters."""
    if not path.startswith("/"):
        return f"mountPath {path!r} must be an absolute path, e.g. /usr/share/nginx/html"
    if path.rstrip("/") == "":
        return "mountPath / would hide the container's whole filesystem; mount the volume on a directory"
    if ".." in path.split("/"):
        return f"mountPath {path!r} must not contain '..'"
    bad = next((c for c in path if c in ":," or not c.isprintable()), None)
    if bad is not None:
        return f"mountPath {path!r} must not contain {bad!r}"
    return None


class MountError(ValueError):
    """A mount the host's files do not allow (a file where a directory must be); the container
    cannot start, and says why."""


@dataclass(frozen=True)
class Bind:
    source: str                  # on the host: a pod's emptyDir, or a file the kubelet gives (resolv.conf)
    target: str                  # where the container sees it
    read_only: bool = False
    directory: bool = True       # a volume (its mountPath is made if missing); False: a file, skipped if
                                 # the host lacks its target (as nsexec always did for resolv.conf, hosts)


class Host:
    """What the plan needs to know of the host: the real one (tests give their own)."""

    def __init__(self) -> None:
        self._mountpoints: list[str] | None = None

    def kind(self, path: str) -> str | None:
        """'dir', 'file' (anything else that is there), or None if nothing is at `path`."""
        try:
            return "dir" if os.path.isdir(path) else "file" if os.path.exists(path) else None
        except OSError:
            return None

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def mountpoints(self) -> list[str]:
        if self._mountpoints is None:
            with open("/proc/self/mountinfo") as f:
                self._mountpoints = [_unescape(line.split()[4]) for line in f if len(line.split()) > 4]
        return self._mountpoints


def _unescape(field_: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


def _under(path: str, top: str, strictly: bool = False) -> bool:
    if path == top:
        return not strictly
    return top == "/" or path.startswith(top + "/")


def _depth(path: str) -> int:
    return 0 if path == "/" else path.count("/")


def _rel(path: str, top: str) -> str:
    return "" if path == top else path[len(top):].lstrip("/") if top != "/" else path.lstrip("/")


def _join(top: str, rel: str) -> str:
    return top if not rel else posixpath.join(top, rel)


@dataclass
class Plan:
    steps: list[str] = field(default_factory=list)     # the script's arguments, before "--"
    dirs: list[str] = field(default_factory=list)      # staging directories the caller makes first

    @property
    def empty(self) -> bool:
        return not self.steps


def plan(binds: Sequence[Bind], scratch: str, host: Host | None = None) -> Plan:
    """The steps that give a container `binds`, staging overlays under `scratch` (a directory in the
    lab's state directory that the caller makes, with the `dirs` of the plan, before the program
    starts). Raises MountError for a mount that cannot be made."""
    host = host or Host()
    points: set[str] = set()

    def mountpoints() -> set[str]:
        """Read only when an overlay is needed: a big lab's mountinfo has a line per namespace."""
        if not points:
            points.update(host.mountpoints(), {"/"})
        return points

    def mount_of(path: str) -> str:
        """The mount point `path` lies on (the deepest one at or above it)."""
        known = mountpoints()
        while path not in known:
            path = posixpath.dirname(path)
        return path

    wanted: list[tuple[Bind, str, str]] = []         # (bind, the existing part's real path, the missing rest)
    for b in binds:
        if not (b.source.startswith("/") and b.target.startswith("/")):
            raise MountError(f"bind-mount paths must be absolute, not {b.source!r} -> {b.target!r}")
        target = posixpath.normpath(b.target)
        existing, rest = target, ""
        while host.kind(existing) is None:
            existing, rest = posixpath.dirname(existing), _join(posixpath.basename(existing), rest)
        if not b.directory and (rest or host.kind(existing) == "dir"):
            continue                   # a file the host has no place for: not given, as before
        if rest and host.kind(existing) != "dir":
            raise MountError(f"{existing} is a file on this machine, so {target} cannot be made for a volume")
        real = host.realpath(existing)
        if b.directory and not rest and host.kind(real) != "dir":
            raise MountError(f"mountPath {target} is a file on this machine, not a directory")
        for path in (real, b.source):
            if _UNSAFE.search(path) or not path.startswith("/"):
                raise MountError(f"{path!r}: podlab mounts only absolute paths without ',', ':' or '\\'")
        wanted.append((b, real, rest))

    # Parents first. A target inside another volume's is made in that volume, as a runtime makes a
    # mount point inside a volume mounted above it: no overlay for it.
    entries = sorted(((b, real, rest, _join(real, rest)) for b, real, rest in wanted), key=lambda w: _depth(w[3]))
    holders: list[int | None] = []
    for i, (_, _, _, target) in enumerate(entries):
        held = [j for j in range(i) if entries[j][0].directory and _under(target, entries[j][3], strictly=True)]
        holders.append(max(held, key=lambda j: len(entries[j][3])) if held else None)

    # One overlay per filesystem a missing path must be made on: a root below another root on the
    # same mount is inside that one's overlay already.
    roots: list[str] = []
    for real in sorted({e[1] for e, held in zip(entries, holders) if e[2] and held is None}, key=_depth):
        if not any(_under(real, r) and mount_of(real) == mount_of(r) for r in roots):
            roots.append(real)
    staged = {r: f"{scratch}/{i}" for i, r in enumerate(roots)}
    out = Plan()
    for r in roots:
        out.dirs += [f"{staged[r]}/{d}" for d in ("upper", "work", "merged")]
        out.steps += ["overlay", r, f"{staged[r]}/upper", f"{staged[r]}/work", f"{staged[r]}/merged"]

    def place(path: str, existing: str) -> str:
        """Where to mount at `path` now: inside the staged overlay that will cover it, else in place."""
        covering = [r for r in roots if _under(path, r) and mount_of(existing) == mount_of(r)]
        if not covering:
            return path
        r = max(covering, key=len)
        return _join(f"{staged[r]}/merged", _rel(path, r))

    at: list[str] = []
    for (b, real, rest, target), held in zip(entries, holders):
        if held is not None:       # made in the volume that holds it (its directory in the lab's state)
            at.append(_join(at[held], _rel(target, entries[held][3])))
        else:                      # in place, or (when missing on the host) in a staged overlay's upper
            at.append(place(target, real))
        if held is not None or rest:
            out.steps += ["mkdir" if b.directory else "touch", at[-1]]
        out.steps += ["bind", b.source, at[-1]]
        if b.read_only:
            out.steps += ["ro", at[-1]]
    for r in roots:
        # Each with what is mounted below it: below `r`, the overlay alone would show bare directories.
        tops = [m for m in sorted(mountpoints())
                if _under(m, r, strictly=True) and mount_of(posixpath.dirname(m)) == mount_of(r)]
        for m in tops:
            out.steps += ["rbind", m, _join(f"{staged[r]}/merged", _rel(m, r))]
    prefix = f"{staged['/']}/merged" if "/" in staged else ""
    for r in roots:
        if r != "/":
            out.steps += ["move", f"{staged[r]}/merged", prefix + r]
    if prefix:
        out.steps += ["root", prefix]
    return out


def prefix(p: Plan) -> list[str]:
    """The argv prefix that makes the mount namespace and then runs the program after it."""
    if p.empty:
        return []
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", SCRIPT, "sh", *p.steps, "--"]
