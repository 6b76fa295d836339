"""The `cni:` section: the user's network list and where its plugins are, for the cni attachment.

    design: {attach: cni, backend: host-gw}
    cni:
      conflist: 10-containerd-net.conflist   # a file beside the topology, or the list inline (JSON text or
                                             # a YAML mapping); a containerd template ({{.PodCIDR}}, ...) works
      cniPath: [/usr/lib/cni]                # where the plugin binaries are (default /usr/lib/cni)
      timeoutSeconds: 30                     # a plugin still running then is killed, its pod marked failed

The list is checked here as libcni would load it, after rendering it with the first node's values,
so a broken file is refused before anything is made; the binaries are looked for by `up`
(lab.cni.plugins), since `podlab plan` needs none of them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.cni import paths, template
from lab.cni.conflist import ConflistError, parse
from lab.designs import Design
from lab.model import CniSettings
from lab.topology.checker import Checker, YamlPath
from lab.topology.schema import CNI_SCHEMA
from lab.topology.wording import describe

MAX_CONFLIST_BYTES = 1024 * 1024
INLINE = "inline"
DEFAULT_CNI_PATH = ("/usr/lib/cni",)


def cni_settings(checker: Checker, top: dict[str, Any], design: Design | None, net: Any,
                 recorded: str | None = None) -> CniSettings | None:
    path: YamlPath = ("cni",)
    if design is None:
        return None
    if not design.attachment.runs_plugins:
        if "cni" in top:
            checker.add(path, f"cni: applies to the cni attachment (design: {{attach: cni, backend: ...}}); this "
                              f"file's design is {design.name}: remove cni: or change the design")
        return None
    if "cni" not in top:
        checker.add(path, "the cni attachment runs your plugins: add a cni: section naming the network list, e.g. "
                          "cni: {conflist: 10-containerd-net.conflist} (a file beside this one) or an inline list")
        return None
    given = checker.fields(path, top.get("cni") or {}, CNI_SCHEMA, "cni") or {}
    cni_path = _cni_path(checker, path + ("cniPath",), given.get("cniPath", list(DEFAULT_CNI_PATH)))
    timeout = given.get("timeoutSeconds", 30)
    if not 0 < timeout <= 600:
        checker.add(path + ("timeoutSeconds",), f"timeoutSeconds {timeout} is out of range: 0 < seconds <= 600")
    if "conflist" not in given:
        return None
    text, source = _conflist_text(checker, path + ("conflist",), given["conflist"], recorded)
    if text is None:
        return None
    _check_list(checker, path + ("conflist",), text, source, net)
    return CniSettings(text, source, tuple(cni_path), float(timeout))


def _cni_path(checker: Checker, path: YamlPath, raw: Any) -> list[str]:
    items = [raw] if isinstance(raw, str) else raw
    out = []
    for i, item in enumerate(items):
        at = path + (i,) if not isinstance(raw, str) else path
        if not isinstance(item, str) or not item.startswith("/"):
            checker.add(at, f"cniPath lists absolute directories (e.g. /usr/lib/cni), got {describe(item)}")
        else:
            out.append(item.rstrip("/") or "/")
    if not items:
        checker.add(path, "cniPath is empty: list the directories with the plugin binaries, e.g. [/usr/lib/cni]")
    return out


def _conflist_text(checker: Checker, path: YamlPath, raw: Any, recorded: str | None) -> tuple[str | None, str]:
    if isinstance(raw, dict):
        return json.dumps(raw, indent=2) + "\n", INLINE
    if raw.lstrip().startswith("{"):
        return raw, INLINE
    if recorded is not None:        # a running lab's record: the file as `up` read it
        return recorded, raw
    base = Path(checker.source).parent if checker.source and not checker.source.startswith("<") else Path(".")
    file = Path(raw) if Path(raw).is_absolute() else base / raw
    try:
        with file.open("rb") as f:
            data = f.read(MAX_CONFLIST_BYTES + 1)
    except FileNotFoundError:
        checker.add(path, f"conflist {raw!r}: no such file ({file}); a conflist file sits beside the topology "
                          "or is named by an absolute path, or write the list inline")
        return None, raw
    except OSError as e:
        checker.add(path, f"conflist {raw!r}: cannot read {file}: {e.strerror or e}")
        return None, raw
    if len(data) > MAX_CONFLIST_BYTES:
        checker.add(path, f"conflist {file} is larger than 1 MiB; a network list is a few dozen lines")
        return None, raw
    try:
        return data.decode("utf-8-sig"), raw
    except UnicodeDecodeError:
        checker.add(path, f"conflist {file} is not UTF-8 text; is it a JSON file?")
        return None, raw


def _check_list(checker: Checker, path: YamlPath, text: str, source: str, net: Any) -> None:
    where = "the inline conflist" if source == INLINE else f"conflist {source}"
    first = None
    if net.pod_cidr is not None and net.node_mask is not None and net.node_mask >= net.pod_cidr.prefixlen:
        first = next(net.pod_cidr.subnets(new_prefix=net.node_mask))
    rendered = text
    if template.has_actions(text):
        try:
            rendered = template.render(text, template.Values.for_node([str(first or "10.244.0.0/24")]))
        except template.TemplateError as e:
            checker.add(path, f"{where} as a template: {e}")
            return
    after = f" (rendered for the first node, PodCIDR {first})" if rendered is not text else ""
    try:
        conf = parse(rendered)
    except ConflistError as e:
        for problem in e.problems:
            checker.add(path, f"{where}{after}: {problem}")
        return
    for i, plugin in enumerate(conf.plugins):
        ipam = plugin.get("ipam") if isinstance(plugin.get("ipam"), dict) else {}
        for key, owner in ((plugin.get("dataDir"), plugin["type"]), (ipam.get("dataDir"), ipam.get("type"))):
            if isinstance(key, str) and not paths.is_private(key):
                checker.add(path, f"{where}: plugins[{i}] ({owner}) keeps its state in dataDir {key}, outside a "
                                  "node's own /run and /var/lib: every emulated node (and this host) would share "
                                  "it. Use a path under /run or /var/lib (kindnet uses /run/cni-ipam-state)")
