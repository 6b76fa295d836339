"""`podlab cni log [POD]`, `podlab cni check [POD]`, `podlab cni plugins`: what the real plugins of a
cni lab did, CHECK on demand, and which plugins this host has."""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, TextIO

from lab.cliopts import lab_option
from lab.errors import NeedsRoot, PodlabError

NEEDS_ROOT: set[str] = set()     # log and check need root; plugins does not (checked per verb)


def register(sub: argparse._SubParsersAction) -> dict[str, Any]:
    sp = sub.add_parser("cni", help="the real CNI plugins of a cni lab: log, check, plugins")
    verbs = sp.add_subparsers(dest="verb", required=True, metavar="VERB")
    log = verbs.add_parser("log", help="every plugin invocation: command, environment, stdin, stdout, stderr, exit, "
                                       "duration")
    log.add_argument("pod", nargs="?", help="one pod (default: all)")
    log.add_argument("-o", "--output", choices=["text", "json"], default="text")
    lab_option(log)
    check = verbs.add_parser("check", help="CHECK each pod's attachment, as libcni's CheckNetworkList")
    check.add_argument("pod", nargs="?", help="one pod (default: all)")
    lab_option(check)
    plugins = verbs.add_parser("plugins", help="the plugin binaries in cniPath and the CNI versions they speak")
    plugins.add_argument("--cni-path", action="append", help="a directory (default /usr/lib/cni); repeat for more")
    return {"cni": cmd_cni}


def cmd_cni(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.verb == "plugins":
        return _plugins(args, out)
    if os.geteuid() != 0:
        raise NeedsRoot(f"cni {args.verb}")
    from lab import api
    lab = api.pick(args.lab)
    if not lab.design.attachment.runs_plugins:
        raise PodlabError(f"lab {lab.name} is design {lab.design.name}: its pods are attached by podlab, not by CNI "
                          "plugins (design: {attach: cni, backend: ...} runs them)")
    if args.pod and not (args.verb == "log" and _logged(lab.name, args.pod)):
        args.pod = lab.target(args.pod).name     # a clear error for a name that is no pod (a gone one has its log)
    return _log(lab, args, out) if args.verb == "log" else _check(lab, args, out)


def _logged(lab: str, pod: str) -> bool:
    from lab.cni import log
    return bool(log.entries(lab, pod))


def _log(lab: Any, args: argparse.Namespace, out: TextIO) -> int:
    from lab.cni import log
    entries = log.entries(lab.name, args.pod)
    if args.output == "json":
        print(json.dumps(entries, indent=1), file=out)
        return 0
    if not entries:
        print(f"no plugin invocations{' for ' + args.pod if args.pod else ''} in lab {lab.name}", file=out)
        return 0
    for e in entries:
        when = time.strftime("%H:%M:%S", time.localtime(e["t"])) + f".{int(e['t'] * 1000) % 1000:03d}"
        exit_ = "killed (timeout)" if e["exit"] is None else f"exit {e['exit']}"
        print(f"{when} {e['command']:<5} {e['plugin']:<10} pod {e['pod']} on {e['node']}: {exit_}, "
              f"{e['seconds'] * 1000:.0f} ms  ({e['path']})", file=out)
        env = " ".join(f"{k}={v}" for k, v in e["env"].items() if k.startswith("CNI_"))
        print(f"  env:    {env}", file=out)
        print(f"  stdin:  {e['stdin']}", file=out)
        if e["stdout"].strip():
            print(f"  stdout: {' '.join(e['stdout'].split())}", file=out)
        if e["stderr"].strip():
            print(f"  stderr: {e['stderr'].strip()}", file=out)
    return 0


def _check(lab: Any, args: argparse.Namespace, out: TextIO) -> int:
    from lab.cni import runner
    results = runner.check(lab.name, [args.pod] if args.pod else None)
    if not results:
        print(f"no attached pods{' named ' + args.pod if args.pod else ''} to CHECK in lab {lab.name}", file=out)
        return 1
    failed = 0
    for pod, failure in results:
        if failure is None:
            print(f"{pod}: CHECK passed", file=out)
        else:
            failed += 1
            print(f"{pod}: CHECK failed: {failure.message} (code {failure.code})", file=out)
    print(f"{len(results) - failed}/{len(results)} pods passed CHECK (podlab cni log shows each plugin's answer)",
          file=out)
    return 1 if failed else 0


def _plugins(args: argparse.Namespace, out: TextIO) -> int:
    from lab import render
    from lab.cni import plugins
    dirs = args.cni_path or list(plugins.DEFAULT_PATH)
    rows = plugins.report(dirs)
    if not rows:
        others = [d for d in plugins.OTHER_PLACES if d not in dirs and plugins.listing(d)]
        print(f"no CNI plugins in {', '.join(dirs)}"
              + (f"; there are some in {', '.join(others)} (--cni-path)" if others else
                 f": install them with 'sudo apt-get install {plugins.PACKAGE}' (Debian puts them in /usr/lib/cni)"),
              file=out)
        return 1
    print(render.table(["DIRECTORY", "PLUGIN", "CNI VERSIONS"], [list(r) for r in rows]), file=out)
    return 0
