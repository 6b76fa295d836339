"""The pure parts of the CNI runtime: templates, conflists, what each plugin is handed, the cache."""
from __future__ import annotations

import base64
import json

import pytest

from lab.cni import cache, conflist, gojson, request, status, template
from lab.cni.invoke import decode_result, plugin_error
from lab.cni.runtime import at_least, interface_problem
from lab.model import Container, ContainerPort, Pod

CONTAINERD_GCE = """{
  "name": "k8s-pod-network",
  "cniVersion": "1.0.0",
  "plugins": [
    {
      "type": "ptp",
      "mtu": 1460,
      "ipam": {
        "type": "host-local",
        "ranges": [{{range $i, $range := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": "{{$range}}"}]{{end}}],
        "routes": [{{range $i, $route := .Routes}}{{if $i}}, {{end}}{"dst": "{{$route}}"}{{end}}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}"""


def test_containerd_template_renders_per_node():
    """containerd's own GCE template (contrib/gce/cni.template), unchanged."""
    text = template.render(CONTAINERD_GCE, template.Values.for_node(["10.244.1.0/24"]))
    conf = json.loads(text)
    assert conf["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    assert conf["plugins"][0]["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]
    two = json.loads(template.render(CONTAINERD_GCE, template.Values.for_node(["10.244.1.0/24", "fd00::/64"])))
    assert two["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00::/64"}]]
    assert two["plugins"][0]["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_template_fields_and_go_printing():
    v = template.Values.for_node(["10.1.0.0/24"])
    assert template.render('"{{.PodCIDR}}" {{ .Routes }} {{.PodCIDRRanges}}', v) == '"10.1.0.0/24" [0.0.0.0/0] [10.1.0.0/24]'
    assert template.render("a  {{- .PodCIDR -}}  b", v) == "a10.1.0.0/24b"
    assert template.render("{{/* a comment */}}x{{range .Routes}}<{{.}}>{{else}}none{{end}}", v) == "x<0.0.0.0/0>"
    assert template.render("{{if .PodCIDR}}yes{{else}}no{{end}}", v) == "yes"
    assert not template.has_actions('{"a": 1}')


@pytest.mark.parametrize("text, words", [
    ("x\n  {{.PodCidr}}", ["line 2, column 3", "can't evaluate field PodCidr", "PodCIDR"]),
    ("{{range .Routes}}", ["line 1, column 1", "has no {{end}}"]),
    ("{{end}}", ["unexpected {{end}}"]),
    ('{{printf "%s" .PodCIDR}}', ["functions and pipes are not supported"]),
    ("ok {{ .PodCIDR", ["line 1, column 4", "unclosed action"]),
    ("{{$x}}", ["undefined variable $x"]),
])
def test_template_errors_say_where(text, words):
    with pytest.raises(template.TemplateError) as e:
        template.render(text, template.Values.for_node(["10.0.0.0/24"]))
    for w in words:
        assert w in str(e.value)


def test_conflist_loads_as_libcni_does():
    c = conflist.parse('{"cniVersion":"1.0.0","name":"cbr0","plugins":[{"type":"bridge","ipam":{"type":"host-local"}},'
                       '{"type":"portmap","capabilities":{"portMappings":true,"ips":false}}]}')
    assert c.types == ("bridge", "portmap") and c.ipam_types() == ("host-local",)
    assert conflist.capabilities(c.plugins[1]) == ("portMappings",)
    single = conflist.parse('{"cniVersion":"0.3.1","name":"x","type":"ptp","ipam":{"type":"host-local"}}')
    assert single.types == ("ptp",) and "name" not in single.plugins[0]


@pytest.mark.parametrize("text, words", [
    ('{"name": "x",\n "plugins": [ {"type": "bridge",} ]}', ["not JSON", "line 2, column 33"]),
    ('{"name": "x", "cniVersion": "1.0.0"}', ['no "plugins"']),
    ('{"name": "x", "plugins": []}', ['"plugins" is empty']),
    ('{"plugins": [{"type": "bridge"}]}', ['no "name"']),
    ('{"name": "x", "plugins": [{"ipam": {}}]}', ['plugins[0]: no "type"']),
    ('{"name": "x", "plugins": [{"type": "../bin/sh"}]}', ['contains "/"']),
    ('{"name": "bad name", "plugins": [{"type": "a"}]}', ["not a valid network name"]),
    ('{"name": "x", "plugins": [{"type": "a", "capabilities": {"portMappings": "yes"}}]}', ['"capabilities" must map']),
    ('[1, 2]', ["JSON object"]),
])
def test_conflist_problems(text, words):
    with pytest.raises(conflist.ConflistError) as e:
        conflist.parse(text)
    for w in words:
        assert w in str(e.value)


def test_go_json_is_what_libcni_writes():
    assert gojson.dumps({"b": 1, "a": [1.0, "x<y&z"], "c": gojson.Struct(z=1, a=2)}) == \
        '{"a":[1,"x\\u003cy\\u0026z"],"b":1,"c":{"z":1,"a":2}}'


def _pod(**kw) -> Pod:
    ports = (ContainerPort(80, "TCP", host_port=8080), ContainerPort(53, "UDP"))
    return Pod("web", "node1", (Container("c", "nginx", (80, 53), port_specs=ports),), **kw)


def test_capability_args_as_containerd_builds_them():
    pod = _pod(annotations=(("kubernetes.io/ingress-bandwidth", "10M"), ("podlab.dev/cni-mac", "02:00:00:00:00:01")))
    caps = request.capability_args(pod)
    assert list(caps) == sorted(caps)
    assert gojson.dumps(caps["portMappings"]) == '[{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":""}]'
    assert caps["bandwidth"] == {"IngressRate": 10_000_000, "IngressBurst": 2**32 - 1, "EgressRate": 0, "EgressBurst": 0}
    assert caps["mac"] == "02:00:00:00:00:01"
    assert caps[request.POD_ANNOTATIONS]["kubernetes.io/ingress-bandwidth"] == "10M"
    with pytest.raises(Exception, match="1k..1P"):
        request.capability_args(_pod(annotations=(("kubernetes.io/egress-bandwidth", "10"),)))


def test_plugin_stdin_injects_as_libcni():
    c = conflist.parse('{"cniVersion":"1.0.0","name":"cbr0","plugins":[{"type":"bridge","isGateway":true},'
                       '{"type":"portmap","capabilities":{"portMappings":true}}]}')
    rt = request.RuntimeConf("a" * 64, "/run/netns/p", "eth0", request.cni_args("lab", _pod()),
                             request.capability_args(_pod()), ("/usr/lib/cni",))
    first = request.plugin_stdin(c, c.plugins[0], None, rt)
    assert first == '{"cniVersion":"1.0.0","isGateway":true,"name":"cbr0","type":"bridge"}'
    prev = json.loads('{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"aa","sandbox":"/run/netns/p"}],'
                      '"ips":[{"interface":0,"address":"10.0.0.2/24","gateway":"10.0.0.1"}],"dns":{}}')
    second = json.loads(request.plugin_stdin(c, c.plugins[1], prev, rt))
    assert second["prevResult"]["ips"][0]["address"] == "10.0.0.2/24"
    assert second["runtimeConfig"] == {"portMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp",
                                                         "HostIP": ""}]}
    env = rt.env("ADD")
    assert env["CNI_ARGS"].startswith("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
                                      "K8S_POD_INFRA_CONTAINER_ID=")
    assert "K8S_POD_UID=" in env["CNI_ARGS"] and env["CNI_PATH"] == "/usr/lib/cni" and env["CNI_IFNAME"] == "eth0"


def test_cache_is_libcnis_format(tmp_path):
    result = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
    target = cache.write(tmp_path, "cbr0", "abc", "eth0", '{"name":"cbr0"}', (("IgnoreUnknown", "1"),), {}, result)
    assert target == tmp_path / "results" / "cbr0-abc-eth0"
    assert oct(target.stat().st_mode & 0o777) == "0o600" and oct(target.parent.stat().st_mode & 0o777) == "0o700"
    raw = json.loads(target.read_text())
    assert list(raw) == ["kind", "containerId", "config", "ifName", "networkName", "cniArgs", "result"]
    assert raw["kind"] == "cniCacheV1" and base64.b64decode(raw["config"]) == b'{"name":"cbr0"}'
    back = cache.read(tmp_path, "cbr0", "abc", "eth0")
    assert back is not None and back.result == result and back.cni_args == (("IgnoreUnknown", "1"),)
    cache.delete(tmp_path, "cbr0", "abc", "eth0")
    assert cache.entries(tmp_path) == []


def test_plugin_errors_read_as_libcni_reads_them():
    assert plugin_error(1, '{"cniVersion":"1.0.0","code":7,"msg":"bad","details":"d"}', "") == \
        {"code": 7, "msg": "bad", "details": "d"}
    assert "no error message: exit status 2" in plugin_error(2, "", "")["msg"]
    assert plugin_error(1, "", "boom\n")["msg"] == "netplugin failed: 'boom'"
    assert "error parsing its diagnostic message" in plugin_error(1, "{oops", "")["msg"]
    assert "without a result" in decode_result("  ")[1]
    assert "invalid JSON" in decode_result("{")[1]


def test_versions_and_names():
    assert at_least("1.0.0", "0.4.0") and not at_least("0.3.1", "0.4.0") and not at_least("", "0.4.0")
    assert interface_problem("eth0") is None and interface_problem("a" * 16)


def test_result_gives_the_pods_address_and_host_veth():
    bridge = {"interfaces": [{"name": "cni0"}, {"name": "veth1234abcd"}, {"name": "eth0", "sandbox": "/run/netns/p"}],
              "ips": [{"interface": 2, "address": "10.244.0.5/24", "gateway": "10.244.0.1"}]}
    ip, veth = status.address_of(bridge, "eth0")
    assert str(ip) == "10.244.0.5/24" and veth == "veth1234abcd"
    ptp = {"interfaces": [{"name": "veth0000aaaa"}, {"name": "eth0", "sandbox": "/x"}],
           "ips": [{"interface": 1, "address": "10.244.1.2/24"}]}
    assert status.address_of(ptp, "eth0")[1] == "veth0000aaaa"


# ---------------------------------------------------------------- the cni: section and the plan

from lab import commands, planner, topology  # noqa: E402
from lab.errors import PodlabError  # noqa: E402
from lab.ops import CniAdd, CniNode  # noqa: E402

LIST = ('{"cniVersion": "1.0.0", "name": "cbr0", "plugins": [{"type": "bridge", "isGateway": true, "ipam": '
        '{"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]]}}]}')


def _doc(cni: str, design: str = "{attach: cni, backend: host-gw}") -> str:
    return f"design: {design}\n{cni}nodes: [n1, n2]\npods:\n  - {{name: a, node: n2, image: nginx}}\n"


def test_plan_renders_the_list_per_node_and_adds_each_pod():
    topo = topology.loads(_doc(f"cni:\n  conflist: {json.dumps(LIST)}\n"), default_name="t")
    plan = planner.build(topo)
    nodes = {op.node: op for op in plan.ops if isinstance(op, CniNode)}
    assert '"subnet": "10.244.1.0/24"' in nodes["n2"].config and nodes["n2"].cni_path == ("/usr/lib/cni",)
    (add,) = [op for op in plan.ops if isinstance(op, CniAdd) and op.pod == "a"]   # and the DNS pod's
    assert add.node_ns == "t-n2" and add.ns == "t-a" and add.network == "cbr0" and add.ifname == "eth0"
    text = "\n".join(commands.render(plan.ops))
    assert "CNI_COMMAND=ADD CNI_CONTAINERID=" in text and "CNI_NETNS=/run/netns/t-a" in text
    assert plan.addresses.pod("a").veth is None       # the plugin names it


def test_list_from_a_file_beside_the_topology(tmp_path):
    (tmp_path / "net.conflist").write_text(LIST)
    (tmp_path / "t.yaml").write_text(_doc("cni:\n  conflist: net.conflist\n  cniPath: [/opt/cni/bin, /usr/lib/cni]\n"))
    topo = topology.load(tmp_path / "t.yaml")
    assert topo.cni.conflist == LIST and topo.cni.source == "net.conflist"
    assert topo.cni.cni_path == ("/opt/cni/bin", "/usr/lib/cni")
    # a running lab's record gives the text as up read it: the file is not read again
    (tmp_path / "net.conflist").write_text("changed since")
    again = topology.loads((tmp_path / "t.yaml").read_text(), source=str(tmp_path / "t.yaml"), conflist=LIST)
    assert again.cni.conflist == LIST


def test_inline_yaml_mapping():
    topo = topology.loads(_doc("cni:\n  conflist: {name: x, cniVersion: 0.4.0, plugins: [{type: ptp}]}\n"))
    assert json.loads(topo.cni.conflist)["plugins"] == [{"type": "ptp"}]


@pytest.mark.parametrize("cni, words", [
    ('cni:\n  conflist: "{\\"name\\": \\"x\\",\\n \\"plugins\\": [}"\n', ["cni.conflist (line 3)", "not JSON",
                                                                          "line 2, column 14"]),
    ("cni:\n  conflist: missing.conflist\n", ["no such file"]),
    ('cni:\n  conflist: \'{"name": "x", "cniVersion": "1.0.0"}\'\n', ['no "plugins"']),
    ('cni:\n  conflist: \'{"name": "x", "plugins": [{"type": "bridge", "ipam": {"type": "host-local", '
     '"dataDir": "/tmp/ipam"}}]}\'\n', ["dataDir /tmp/ipam, outside a node's own /run and /var/lib"]),
    ("cni:\n  conflist: '{\"name\": \"x\", \"plugins\": [{\"type\": \"{{.PodCidr}}\"}]}'\n",
     ["as a template", "can't evaluate field PodCidr"]),
    ("cni:\n  conflist: x\n  cniPath: [usr/lib/cni]\n", ["absolute directories"]),
    ("", ["add a cni: section"]),
])
def test_cni_section_problems(cni, words):
    with pytest.raises(PodlabError) as e:
        topology.loads(_doc(cni))
    for w in words:
        assert w in str(e.value), str(e.value)


def test_cni_section_belongs_to_the_cni_attachment():
    with pytest.raises(PodlabError, match="cni: applies to the cni attachment"):
        topology.loads(_doc(f"cni:\n  conflist: {json.dumps(LIST)}\n", design="flannel"))


def test_flannel_list_gets_flanneld_subnet_file():
    flannel = '{"name": "cbr0", "cniVersion": "0.3.1", "plugins": [{"type": "flannel", "delegate": {}}]}'
    plan = planner.build(topology.loads(_doc(f"cni:\n  conflist: {json.dumps(flannel)}\n", "{attach: cni, backend: vxlan}")))
    node = next(op for op in plan.ops if isinstance(op, CniNode) and op.node == "n2")
    assert node.flannel_env == ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n"
                                "FLANNEL_IPMASQ=true\n")
