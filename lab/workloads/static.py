"""nginx's static files: what the http workload serves when a volume is mounted at nginx's document
root (/usr/share/nginx/html), as seed 001's init container writes index.html into an emptyDir there.

nginx's default site: `/` (any directory) is its index.html (or index.htm), a directory without
one is 403 Forbidden (autoindex is off), a directory named without its '/' is redirected to it
(301), a missing file is 404, a path climbing above the root is 400. A file is read only if it
really lies in its volume's directory: a symlink a container made pointing elsewhere would lead
to the host's files, not the container's, so it is 404 here.
"""
from __future__ import annotations

import os
import posixpath
from pathlib import Path
from urllib.parse import unquote

INDEX = ("index.html", "index.htm")
MAX_FILE = 10 * 1024 * 1024     # read whole, on the agent's loop: small pages, as a teaching lab serves
TYPES = {"html": "text/html", "htm": "text/html", "css": "text/css", "js": "application/javascript",
         "json": "application/json", "txt": "text/plain", "xml": "text/xml", "png": "image/png",
         "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "svg": "image/svg+xml",
         "ico": "image/x-icon"}   # a few of nginx's mime.types; anything else: its default_type

View = list[tuple[str, Path]]   # (path below the root, the directory serving it), deepest first


def error_page(status: int, reason: str) -> bytes:
    title = f"{status} {reason}"
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
            f"<hr><center>podlab</center>\r\n</body>\r\n</html>\r\n").encode()


def _locate(view: View, rel: str) -> Path | None:
    """The host path of `rel` (below the root), if it stays inside the volume that serves it."""
    for prefix, directory in view:
        if not prefix or rel == prefix or rel.startswith(prefix + "/"):
            path = directory / rel[len(prefix):].lstrip("/")
            real, base = os.path.realpath(path), os.path.realpath(directory)
            return Path(real) if real == base or real.startswith(base + "/") else None
    return None


def answer(view: View, target: str) -> tuple[int, bytes, str, dict[str, str]]:
    """(status, body, content type, extra headers) for a GET of `target` (the URL's path)."""
    path = unquote(target)
    if "\0" in path or not path.startswith("/"):
        return 400, error_page(400, "Bad Request"), "text/html", {}
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if not parts:        # above the root: nginx refuses the request
                return 400, error_page(400, "Bad Request"), "text/html", {}
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    rel = "/".join(parts)
    found = _locate(view, rel)
    if found is not None and found.is_dir():
        if not path.endswith("/"):
            return 301, error_page(301, "Moved Permanently"), "text/html", {"Location": target + "/"}
        index = next((found / name for name in INDEX if (found / name).is_file()), None)
        if index is None:
            return 403, error_page(403, "Forbidden"), "text/html", {}
        found = _locate(view, posixpath.join(rel, index.name))
    if found is None or not found.is_file():
        return 404, error_page(404, "Not Found"), "text/html", {}
    try:
        with open(found, "rb") as f:
            body = f.read(MAX_FILE + 1)
    except OSError:
        return 403, error_page(403, "Forbidden"), "text/html", {}
    if len(body) > MAX_FILE:
        return 403, error_page(403, "Forbidden"), "text/html", {}
    ext = found.name.rpartition(".")[2].lower() if "." in found.name else ""
    return 200, body, TYPES.get(ext, "application/octet-stream"), {}
