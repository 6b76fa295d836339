"""Render bench/results.json as RESULTS.md (tables of every figure and ratio) and bringup.png."""
from __future__ import annotations

from pathlib import Path

TARGETS = {
    "up_floor": 1.5,          # podlab bring-up of 1000 pods within 1.5x the floor
    "up_mininet": 8.0,        # ... and at least 8x faster than Mininet
    "down_mininet": 10.0,     # teardown at least 10x faster than Mininet
    "reach_mininet": 10.0,    # all-pairs reachability of 100 pods at least 10x faster than pingall
    "memory_mb": 300.0,       # workloads for 1000 pods under 300 MB RSS
    "trace_s": 1.0, "get_pods_s": 1.0, "tui_s": 2.0,
}


def s(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def median_of(xs: list) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def bringup_rows(b: dict) -> tuple[str, list[dict]]:
    rows, facts = [], []
    for n, data in sorted(b.get("sizes", {}).items(), key=lambda kv: int(kv[0])):
        m = data["median"]
        p, i, f, mn, k = (m.get(key, {}) for key in ("podlab", "podlab_idle", "floor", "mininet", "kindnet"))
        loads = [r["load"] for runs in data["runs"].values() for r in runs]
        fact = {"n": int(n), "podlab_up": p.get("up"), "podlab_down": p.get("down"), "idle_up": i.get("up"),
                "floor_up": f.get("up"), "floor_down": f.get("down"), "mininet_up": mn.get("up"),
                "mininet_down": mn.get("down"), "kindnet_up": k.get("up")}
        facts.append(fact)
        rows.append([n, s(p.get("up")), s(i.get("up")), s(k.get("up")), s(ratio(k.get("up"), p.get("up"))),
                     s(f.get("up")), s(mn.get("up")),
                     s(ratio(p.get("up"), f.get("up"))), s(ratio(i.get("up"), f.get("up"))),
                     s(ratio(mn.get("up"), p.get("up")), 1),
                     s(p.get("down")), s(f.get("down")), s(mn.get("down")),
                     s(ratio(mn.get("down"), p.get("down")), 1),
                     f"{s(p.get('settle'))} / {s(f.get('settle'))} / {s(mn.get('settle'))}",
                     f"{s(p.get('up_cpu'))} / {s(f.get('up_cpu'))}",
                     f"{min(loads):.1f}-{max(loads):.1f}" if loads else "—"])
    header = ["N", "podlab up (nginx)", "podlab up (idle)", "kindnet up (ptp, nginx)", "kindnet/bridge", "floor up", "Mininet up", "podlab/floor",
              "idle/floor", "Mininet/podlab", "podlab down", "floor down", "Mininet down", "Mininet/podlab down",
              "settle after down: podlab / floor / Mininet", "CPU of up: podlab / floor", "load"]
    return _table(header, [[str(c) for c in r] for r in rows]), facts


def plot(b: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    series = {"podlab (nginx in every pod)": "podlab", "podlab (idle pods)": "podlab_idle",
              "podlab kindnet (ptp, nginx)": "kindnet",
              "floor (raw netlink, same objects)": "floor", "Mininet (LinuxBridge, no controller)": "mininet"}
    series |= {"podlab, /run on tmpfs": "podlab_tmpfs", "floor, /run on tmpfs": "floor_tmpfs"}
    styles = {"podlab": "o-", "podlab_idle": "o--", "kindnet": "D-", "floor": "s-", "mininet": "^-", "podlab_tmpfs": "C0o",
              "floor_tmpfs": "C2s"}
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    sizes = sorted(b.get("sizes", {}), key=int)
    for label, key in series.items():
        xs, ys, lo, hi = [], [], [], []
        for n in sizes:
            runs = b["sizes"][n]["runs"].get(key) or []
            ups = [r["up"] for r in runs if r.get("up") is not None]
            if ups:
                med = sorted(ups)[len(ups) // 2] if len(ups) % 2 else sum(sorted(ups)[len(ups) // 2 - 1:len(ups) // 2 + 1]) / 2
                xs.append(int(n)), ys.append(med), lo.append(med - min(ups)), hi.append(max(ups) - med)
        if xs:
            hollow = {"markerfacecolor": "none"} if key.endswith("_tmpfs") else {}
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=styles[key], capsize=3, label=label, **hollow)
    ax.set_xlabel("endpoints on one bridge (pods / hosts)")
    ax.set_ylabel("bring-up time, s (median, min-max)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("Bring-up time against N")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write(results: dict, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    m = results.get("machine", {})
    lines = ["# podlab benchmark results", "",
             "Produced by `make bench` (`bench/run.py`); raw figures in `results.json`. Every time is wall-clock "
             "seconds, the median of the repeats; ratios are of medians. \"floor\" is `bench/floor.py`: the same "
             "kernel objects as podlab's l2 lab, made by a minimal raw-netlink script.", "",
             "## Machine", "",
             f"- {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gb')} GB RAM; {m.get('os')}, kernel "
             f"{m.get('kernel')}; Python {m.get('python')}; Mininet {m.get('mininet')}; {m.get('iproute2')}",
             f"- `/run/netns` is on **{m.get('run_fs')}**; br_netfilter loaded: {m.get('br_netfilter')}",
             "- the cores were shared with other engineers' test runs: the load average at each measurement is "
             "recorded (column \"load\"), and times are noisy accordingly", ""]
    checks: list[list[str]] = []

    b = results.get("bringup")
    if b:
        table, facts = bringup_rows(b)
        lines += [f"## 1. Bring-up and teardown of N endpoints on one bridge ({b.get('date')})", "",
                  "podlab: `api.up` of an `l2` lab, one node, N pods (\"nginx\": a web server in every pod, served "
                  "by the agent; \"idle\": `image: pause`), then `api.down`. Mininet: `Mininet(topo, "
                  "switch=LinuxBridge, controller=None)`, `build()` + `start()`, then `stop()` until its shells "
                  "have exited (in a network namespace of its own, see docs/bench.md). Floor: `bench/floor.py`. \"settle\" is how long the kernel still worked after "
                  "down returned (namespace cleanup is asynchronous): measured with a sentinel namespace released "
                  "right after.", "", table, ""]
        if plot(b, out_dir / "bringup.png"):
            lines += ["![bring-up time against N](bringup.png)", ""]
        tmpfs = [(n, d["median"]) for n, d in b.get("sizes", {}).items()
                 if "podlab_tmpfs" in d["median"] and "floor_tmpfs" in d["median"]]
        for n, m in tmpfs:
            pt, ft, mn = m["podlab_tmpfs"], m["floor_tmpfs"], m.get("mininet", {})
            lines += [f"With `/run` on a tmpfs, as on a stock Debian (N={n}; `bench/tmpfs_run.py`: a private mount "
                      f"namespace, the network namespaces are real):", "",
                      _table(["N", "podlab up", "floor up", "podlab/floor", "Mininet/podlab", "podlab down",
                              "floor down", "Mininet/podlab down", "settle: podlab / floor"],
                             [[n, s(pt["up"]), s(ft["up"]), s(ratio(pt["up"], ft["up"])),
                               s(ratio(mn.get("up"), pt["up"]), 1), s(pt["down"]), s(ft["down"]),
                               s(ratio(mn.get("down"), pt["down"]), 1), f"{s(pt['settle'])} / {s(ft['settle'])}"]]),
                      ""]
        big = max(facts, key=lambda f: f["n"]) if facts else None
        if big:
            r_floor = ratio(big["podlab_up"], big["floor_up"])
            r_mn = ratio(big["mininet_up"], big["podlab_up"])
            r_down = ratio(big["mininet_down"], big["podlab_down"])
            checks += [[f"bring-up of {big['n']} pods within 1.5x the floor", f"{s(r_floor)}x",
                        verdict(None if r_floor is None else r_floor <= TARGETS["up_floor"])],
                       [f"bring-up of {big['n']} pods at least 8x faster than Mininet", f"{s(r_mn, 1)}x",
                        verdict(None if r_mn is None else r_mn >= TARGETS["up_mininet"])],
                       [f"teardown of {big['n']} at least 10x faster than Mininet", f"{s(r_down, 1)}x",
                        verdict(None if r_down is None else r_down >= TARGETS["down_mininet"])]]

    c = results.get("cluster")
    if c:
        rows = []
        for key, d in c.items():
            if not isinstance(d, dict) or "median" not in d:
                continue
            last = d["runs"][-1]
            converge = d["median"].get("bgp_converge")
            rows.append([key.replace("_", " "), str(d["nodes"]), str(d["pods"]), s(d["median"]["up"]),
                         s(converge) if converge is not None else "—",
                         s(d["median"]["check"]), f"{last['passed']}/{last['paths']}"
                         + (" (sampled)" if last["sampled"] else " (all pairs)"),
                         s(d["median"]["down"]), s(d["median"]["settle"])])
        lines += [f"## 2. Clusters: up, check, down ({c.get('date')})", "",
                  _table(["cluster", "nodes", "pods", "up", "of which BGP converging", "check", "paths passed",
                          "down", "settle"], rows), "",
                  "`check` is `podlab check`'s probing (ICMP and HTTP, no NAT allowed), in-process; above 20,000 "
                  "paths it checks a sample that still crosses every pair of nodes. `up` returns once the lab is "
                  "ready: for calico, every BGP session Established and every block in every node's kernel.", ""]
        cal, flan = c.get("calico_50x20"), c.get("vxlan_50x20")
        if isinstance(cal, dict) and isinstance(flan, dict) and "median" in cal and "median" in flan:
            n = cal["nodes"]
            sessions = n * (n - 1) // 2
            up, conv = cal["median"]["up"], cal["median"].get("bgp_converge") or 0.0
            build_ratio = (up - conv) / flan["median"]["up"] if flan["median"]["up"] else None
            last = cal["runs"][-1]
            lines += [f"Calico, {n} nodes ({sessions} BGP sessions, {n - 1} per BIRD): up and converged in {s(up)} s "
                      f"(target 15 s: {verdict(up <= 15)}); building it took {s(up - conv)} s, "
                      f"{s(build_ratio)}x the same {cal['pods']}-pod cluster in flannel (target at most 1.5x: "
                      f"{verdict(None if build_ratio is None else build_ratio <= 1.5)}); each BIRD's memory "
                      f"(median): RSS {s(last.get('bird_rss_mb'))} MB, PSS {s(last.get('bird_pss_mb'))} MB.", ""]

    r = results.get("reachability")
    if r:
        p = r.get("podlab", {})
        mn = r.get("mininet", {})
        last = (p.get("checks") or [{}])[-1]
        pd = r.get("podlab_dns", {})
        dlast = (pd.get("checks") or [{}])[-1]
        speed = ratio(mn.get("median"), p.get("median_wall"))
        icmp = median_of([x.get("seconds") for x in p.get("icmp_only") or []])
        lines += [f"## 3. Reachability: all pairs of {r.get('pods')} pods ({r.get('date')})", "",
                  _table(["", "time", "what it proves"],
                         [["`podlab check` (CLI, whole command)", s(p.get("median_wall")),
                           f"{last.get('passed')}/{last.get('total')} paths: every pod to every pod and the node to "
                           f"every pod, over ICMP and HTTP, source address checked (no NAT); `dns: false`, so "
                           f"no kube-proxy, like Mininet's hosts"],
                          ["Mininet `pingAll()` (hosts with permanent ARP entries, like the pods)", s(mn.get("median")),
                           f"{(mn.get('runs') or [{}])[-1].get('pingall', {}).get('pairs')} ordered pairs, one ping "
                           f"each, {(mn.get('runs') or [{}])[-1].get('pingall', {}).get('loss_percent')}% loss"],
                          ["Mininet / podlab", f"{s(speed, 1)}x", ""],
                          *([["`podlab check` of the default cluster (cluster DNS: kube-proxy, bridge netfilter)",
                              s(pd.get("median_wall")),
                              f"{dlast.get('passed')}/{dlast.get('total')} paths and the DNS Service; every bridged "
                              f"packet through netfilter and conntrack; Mininet / this: "
                              f"{s(ratio(mn.get('median'), pd.get('median_wall')), 1)}x"]] if pd else []),
                          ["podlab's ICMP probing alone (in-process)", s(icmp),
                           f"one echo per ordered pair of pods, as pingall sends: "
                           f"{(p.get('icmp_only') or [{}])[-1].get('passed')}/{(p.get('icmp_only') or [{}])[-1].get('total')}"
                           f" answered; Mininet / this: {s(ratio(mn.get('median'), icmp), 1)}x"]]), ""]
        checks.append([f"all-pairs reachability of {r.get('pods')} pods at least 10x faster than pingall",
                       f"{s(speed, 1)}x", verdict(None if speed is None else speed >= TARGETS["reach_mininet"])])

    mem = results.get("memory")
    if mem:
        p, mn = mem.get("podlab", {}), mem.get("mininet", {})
        lines += [f"## 4. Memory of {mem.get('pods')} pods / hosts ({mem.get('date')})", "",
                  _table(["", "processes", "RSS (MB)", "PSS (MB)"],
                         [["podlab: the workload agent (nginx in every pod)", str(p.get("processes")),
                           s(p.get("rss_mb"), 1), s(p.get("pss_mb"), 1)],
                          ["Mininet: host and switch shells", str(mn.get("processes")), s(mn.get("shells_rss_mb"), 0),
                           s(mn.get("shells_pss_mb"), 0)],
                          ["Mininet: its Python process", "1", s(mn.get("python_rss_mb"), 0),
                           s(mn.get("python_pss_mb"), 0)]]), "",
                  "RSS counts shared pages (bash's libraries) once per process; PSS divides them among the "
                  "processes sharing them. Kernel memory (namespaces, devices) is not included.", ""]
        checks.append([f"workloads for {mem.get('pods')} pods under 300 MB RSS", f"{s(p.get('rss_mb'), 1)} MB",
                       verdict(None if p.get("rss_mb") is None else p["rss_mb"] < TARGETS["memory_mb"])])

    d = results.get("dataplane")
    if d and "error" not in d:
        lines += [f"## 5. Data plane: iperf3, {d.get('iperf_seconds', 0):g} s each ({d.get('date')})", "",
                  _table(["path", "Gbit/s"],
                         [["pod -> pod on one node (veth, bridge cni0)", s(d.get("same_node"))],
                          ["pod -> pod across nodes, host routes (flannel host-gw)", s(d.get("host_routes"))],
                          ["pod -> pod across nodes, VXLAN (flannel.1)", s(d.get("vxlan"))],
                          ["Mininet h1 -> h2 on one LinuxBridge (reference)", s(d.get("mininet_h1_h2"))]]), "",
                  "The kernel's numbers, on shared cores: single runs, indicative only.", ""]

    it = results.get("interaction")
    if it:
        def fig(key: str) -> str:
            v = it.get(key)
            return v if isinstance(v, str) else s(v.get("median")) if isinstance(v, dict) else s(v)
        lines += [f"## 6. Interaction latency on the {it.get('lab')} lab ({it.get('date')})", "",
                  _table(["command", "seconds (whole command, from a shell)"],
                         [["`podlab up` (CLI)", s(it.get("cli_up"))],
                          ["`podlab get pods`", fig("get_pods")],
                          ["`podlab trace` across nodes", fig("trace")],
                          ["TUI first screen (tree + the first pod's kernel state)", fig("tui_first_screen")],
                          ["`podlab down` (CLI)", s(it.get("cli_down"))]]), ""]
        ch = it.get("change")
        if isinstance(ch, dict) and ch.get("apply") is not None:
            rebuild = (it.get("cli_up") or 0) + (it.get("cli_down") or 0)
            lines += [f"One pod added to the running lab with `podlab apply -f` (a v1 Pod manifest): {s(ch['apply'])} s for "
                      f"the whole command, {s(ch.get('apply_inside'), 3)} s of it the change itself (kernel work and the "
                      f"agent), {s(ch.get('apply_kernel'), 3)} s the kernel work; `podlab delete pod`: {s(ch['delete'])} s "
                      f"({s(ch.get('delete_inside'), 3)} s, kernel {s(ch.get('delete_kernel'), 3)} s). The down + "
                      f"up it replaces: {s(rebuild)} s, {s(rebuild / ch['apply'], 1)}x the apply.", ""]
            checks += [["adding one pod to the running lab under 0.5 s (whole command)", f"{s(ch['apply'])} s",
                        verdict(ch["apply"] < 0.5)],
                       ["deleting one pod under 0.5 s (whole command)", f"{s(ch['delete'])} s",
                        verdict(ch["delete"] < 0.5)]]
            for verb in ("apply", "delete"):
                kernel = ch.get(f"{verb}_kernel")
                if kernel is not None:
                    checks.append([f"one pod's {'adding' if verb == 'apply' else 'deleting'}: kernel work under 50 ms",
                                   f"{s(kernel * 1000, 0)} ms", verdict(kernel < 0.05)])
            checks.append(["one pod at least 5x faster than down + up", f"{s(rebuild / ch['apply'], 1)}x",
                           verdict(rebuild / ch["apply"] >= 5)])
        sc = it.get("scale")
        if isinstance(sc, dict) and sc.get("up_10_110") is not None:
            rebuild = (it.get("cli_up") or 0) + (it.get("cli_down") or 0)
            lines += [f"A Deployment scaled in the running lab with `podlab scale`: 10 -> 110 replicas {s(sc['up_10_110'])} s "
                      f"({s(sc.get('up_inside'))} s of it the change), 110 -> 10 {s(sc.get('down_110_10'))} s "
                      f"({s(sc.get('down_inside'))} s); down + up: {s(rebuild)} s.", ""]
            checks.append(["scaling a Deployment 10 -> 110 under 2 s (whole command)", f"{s(sc['up_10_110'])} s",
                           verdict(sc["up_10_110"] < 2)])
        for label, key, limit in (("trace under 1 s", "trace", TARGETS["trace_s"]),
                                  ("get pods under 1 s", "get_pods", TARGETS["get_pods_s"]),
                                  ("TUI first screen under 2 s", "tui_first_screen", TARGETS["tui_s"])):
            v = it.get(key)
            if isinstance(v, dict):
                checks.append([label, f"{s(v.get('median'))} s",
                               verdict(None if v.get("median") is None else v["median"] < limit)])
            else:
                checks.append([label, str(v), "—"])

    ep = results.get("endpoints")
    if ep and "error" not in ep:
        lines += [f"## 7. Endpoints follow readiness on a lab of {ep.get('lab')} ({ep.get('date')})", "",
                  "From the agent marking a pod's container running (`startedAt`) to the kernel of the last node "
                  "announcing the Service chain that sends to it (`nft monitor rules` in every node's namespace): "
                  "the agent's kube-proxy sends one transaction per node, rewriting that Service only.", "",
                  _table(["event", "median s", "max s"],
                         [["a crash-looping pod running again", s(ep.get("restart"), 3), s(ep.get("restart_max"), 3)],
                          ["a new pod applied", s(ep.get("new_pod"), 3), s(ep.get("new_pod_max"), 3)]]), ""]
        worst = max((v for v in (ep.get("restart_max"), ep.get("new_pod_max")) if v is not None), default=None)
        checks.append(["a new ready endpoint in the Service's rules within 200 ms (worst of the runs)",
                       f"{s(worst, 3)} s", verdict(None if worst is None else worst <= 0.2)])
    c = results.get("cni")
    if c and "median" in c:
        import cni_bench
        more, check = cni_bench.report(c, s, _table)
        lines += more
        checks.append(check)

    if checks:
        lines += ["## Targets", "", _table(["target", "measured", ""], checks), ""]
    notes = Path(__file__).resolve().parent / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    lines += [f"Root network namespace unchanged across the run: {results.get('root_namespace_unchanged')}", ""]
    text = "\n".join(lines)
    (out_dir / "RESULTS.md").write_text(text)
    return out_dir / "RESULTS.md"
