"""The cluster design as pure, frozen data.

A Topology is what a topology YAML file means once it has been validated: every
Deployment already expanded into named pods placed on nodes, every default filled in.
Nothing here touches the kernel; addressing and planning read it, never change it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

MODES = ("l2", "l3", "vxlan")          # the older `mode:` key, an alias of a design (lab.designs)
ROUTING_STYLES = ("host", "gateway")

# Built-in workloads that stand in for container images (see lab/workloads).
WORKLOAD_IMAGES = {
    "nginx": "http",        # HTTP page "Welcome to the home page of host <pod>!"
    "busybox": "idle",      # nothing listening; exec into it like `kubectl exec`
    "netshoot": "idle",
    "pause": "idle",
    "echoserver": "echo",   # agnhost netexec-like: HTTP 8080 + UDP 8081 report hostname and client address
    "agnhost": "echo",
}


@dataclass(frozen=True)
class ContainerPort:
    """A declared container port: what a Service's named targetPort and a hostPort refer to."""
    port: int
    protocol: str = "TCP"
    name: str = ""
    host_port: int | None = None   # portmap: the node's address:host_port is DNATed to the pod


@dataclass(frozen=True)
class VolumeMount:
    """Where a container sees one of its pod's volumes."""
    volume: str
    mount_path: str
    read_only: bool = False


@dataclass(frozen=True)
class Volume:
    """A pod's volume. emptyDir is the one kind emulated: a directory made when the pod starts,
    shared by its containers, removed with the pod (lab.workloads.volumes)."""
    name: str
    kind: str = "emptyDir"


@dataclass(frozen=True)
class FieldRef:
    """An env value taken from the pod (the downward API's valueFrom.fieldRef; lab.podenv)."""
    field_path: str


@dataclass(frozen=True)
class Container:
    name: str
    image: str = "busybox"
    ports: tuple[int, ...] = ()
    command: tuple[str, ...] = ()
    port_specs: tuple[ContainerPort, ...] = ()   # the ports as declared (name, protocol, hostPort)
    volume_mounts: tuple[VolumeMount, ...] = ()
    # The environment variables a command container gets, in order: (name, value), or (name, the pod
    # field the kubelet fills it in from).
    env: tuple[tuple[str, str | FieldRef], ...] = ()

    @property
    def workload(self) -> str:
        """How podlab runs it: 'command' (a real process), or a built-in: http, echo, idle."""
        if self.command:
            return "command"
        return WORKLOAD_IMAGES.get(self.image.split(":")[0].split("/")[-1], "idle")


@dataclass(frozen=True)
class Pod:
    name: str
    node: str
    containers: tuple[Container, ...]
    namespace: str = "default"
    host_network: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    deployment: str | None = None
    ordinal: int | None = None      # which of its Deployment's pods (names follow it; lab.topology.placement)
    init_containers: tuple[Container, ...] = ()   # run in order, each to completion, before `containers`
    volumes: tuple[Volume, ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()  # metadata.annotations (rollout restart's restartedAt; the cni
    #                                               attachment reads bandwidth's)

    @property
    def template_hash(self) -> str | None:
        """Its ReplicaSet's pod-template-hash (a Deployment's pod), from its label as Kubernetes keeps it."""
        return dict(self.labels).get("pod-template-hash") if self.deployment is not None else None


@dataclass(frozen=True)
class Strategy:
    """A Deployment's spec.strategy, defaulted as the API server does (RollingUpdate, 25% and 25%).
    maxSurge and maxUnavailable are a number of pods or a percentage of the replicas ("25%")."""
    type: str = "RollingUpdate"                 # RollingUpdate | Recreate
    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"


@dataclass(frozen=True)
class Deployment:
    """A Deployment as the deployment controller reads it: how many pods of which template, and how
    to roll from one template to the next (lab.rolling)."""
    name: str
    namespace: str
    replicas: int
    template_hash: str                          # its newest ReplicaSet's (the template it asks for now)
    strategy: Strategy = Strategy()
    min_ready_seconds: int = 0                  # a new pod counts as available once Ready this long
    progress_deadline_seconds: int = 600        # a rollout making no progress this long has failed
    revision_history_limit: int = 10            # old ReplicaSets kept (scaled to 0) for their templates


@dataclass(frozen=True)
class ReplicaSet:
    """One template's pods of a Deployment: `replicas` pods named <deployment>-<hash>-<suffix>.
    A Deployment whose template changed has two or more while it rolls (lab.topology.replicasets)."""
    name: str                                   # <deployment>-<pod-template-hash> (lab.naming.replicaset_name)
    deployment: str
    namespace: str
    template_hash: str
    replicas: int                               # spec.replicas: how many pods it has
    revision: int                               # deployment.kubernetes.io/revision: 1, 2, ... newest highest
    ordinals: tuple[int, ...] = ()              # which of the Deployment's pods are its (lab.topology.placement)
    template: str | None = None                 # its pod template as the document wrote it (JSON), to plan
    #                                             its pods once the document has another; None: podlab's own


@dataclass(frozen=True)
class Node:
    name: str


@dataclass(frozen=True)
class OutsideHost:
    """A machine on the underlay that is not part of the cluster (seed 000's "ECS in the same VPC")."""
    name: str


SERVICE_TYPES = ("ClusterIP", "NodePort")


@dataclass(frozen=True)
class ServicePort:
    port: int
    target_port: int | str         # a number, or the name of a container port
    protocol: str = "TCP"
    name: str = ""
    node_port: int | None = None   # NodePort services (allocated at load when not given)


@dataclass(frozen=True)
class Service:
    """A Service as the API server holds it once defaulted: ClusterIP and NodePorts allocated."""
    name: str
    namespace: str = "default"
    type: str = "ClusterIP"        # ClusterIP | NodePort
    selector: tuple[tuple[str, str], ...] = ()
    ports: tuple[ServicePort, ...] = ()
    cluster_ip: IPv4Address | None = None   # None: headless (clusterIP: None)


@dataclass(frozen=True)
class CalicoSettings:
    """The `calico:` section: Calico IPAM's block size and BGP's options (calico designs only).
    The IP pool is network.podCIDR, as kube-proxy's cluster CIDR is Calico's default pool."""
    block_size: int = 26                         # blockSize of the default IPPool (/26: 64 addresses)
    as_number: int = 64512                       # Calico's default AS
    node_to_node_mesh: bool = True               # BGPConfiguration nodeToNodeMeshEnabled
    route_reflectors: tuple[str, ...] = ()       # nodes that reflect routes when the mesh is off


@dataclass(frozen=True)
class CniSettings:
    """The `cni:` section (the cni attachment): the user's network list and where its plugins are."""
    conflist: str                  # the conflist as written (a template: lab.cni.template), JSON text
    source: str                    # the file it was read from (as the topology names it), or "inline"
    cni_path: tuple[str, ...] = ("/usr/lib/cni",)
    timeout: float = 30.0          # seconds a plugin may take before it is killed and the pod marked failed


@dataclass(frozen=True)
class DesignChoice:
    """The design the file asked for, by name: lab.designs.of(topology) gives what it means."""
    attach: str                    # how a pod joins its node: bridge, ptp
    backend: str                   # how nodes reach each other's blocks: l2, host-gw, vpc, vxlan
    preset: str | None = None      # the real CNI's name it was asked by: flannel, kindnet, ...


@dataclass(frozen=True)
class Topology:
    name: str
    design: DesignChoice
    pod_cidr: IPv4Network
    node_mask: int                 # prefix length of each node's pod block (kube's --node-cidr-mask-size)
    node_subnet: IPv4Network       # the underlay: the VPC subnet or the physical switch's subnet
    service_cidr: IPv4Network
    mtu: int                       # underlay MTU; pods get less where the backend encapsulates
    bridge: str = "cni0"
    nodes: tuple[Node, ...] = ()
    pods: tuple[Pod, ...] = ()
    outside: tuple[OutsideHost, ...] = ()
    services: tuple[Service, ...] = ()
    cluster_services: bool = False   # kube-proxy runs: the cluster has Services (the DNS one, or the file's services:)
    cluster_dns: bool = False        # the kube-dns Service and its DNS pod (every cluster, unless `dns: false`)
    description: str = ""
    source: str | None = field(default=None, compare=False)
    text: str = field(default="", compare=False, repr=False)   # the document as it was read, for the lab's record
    calico: CalicoSettings | None = None     # designs with the calico attachment
    deployments: tuple[Deployment, ...] = ()
    replicasets: tuple[ReplicaSet, ...] = ()  # every Deployment's, oldest revision first

    def deployment(self, name: str) -> Deployment | None:
        return next((d for d in self.deployments if d.name == name), None)
    cni: CniSettings | None = None           # the cni attachment: the user's conflist and cniPath

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def pods_on(self, node: str) -> tuple[Pod, ...]:
        return tuple(p for p in self.pods if p.node == node)
