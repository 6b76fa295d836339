"""Names: the ones podlab generates (pod, veth, namespace names) and the rules for the ones users write.

Kubernetes names a Deployment's pods `<deployment>-<pod-template-hash>-<suffix>`, e.g.
`nginx-6bfd886fb5-fvngf`: the ReplicaSet's name plus five random characters. Both parts
use Kubernetes' "safe" alphabet (no vowels, so no accidental words; no 0, 1 or 3, which
look like letters). The hash comes from the pod template, so a changed template is a new
ReplicaSet with new pod names. podlab derives both parts from sha256 instead of randomness,
so one file always gives the same names and a trainee's notes stay valid across `down` and `up`.
"""
from __future__ import annotations

import hashlib
import re

from lab.state import LAB_NAME

# k8s.io/apimachinery/pkg/util/rand: alphanums
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
TEMPLATE_HASH_LENGTH = 10
SUFFIX_LENGTH = 5
MAX_POD_NAME = 63  # a pod's name is its hostname: a DNS label's length
# Kubernetes cuts a generateName base to 63 - 5 = 58 characters; a deployment name of
# at most 46 keeps `<deployment>-<hash>-` within that, so the hash is never cut.
MAX_DEPLOYMENT_PART = MAX_POD_NAME - TEMPLATE_HASH_LENGTH - SUFFIX_LENGTH - 2


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _safe_encode(digest: bytes, length: int) -> str:
    """`length` characters of the safe alphabet taken from the digest's leading base-27 digits."""
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, len(SAFE_ALPHABET))
        chars.append(SAFE_ALPHABET[digit])
    return "".join(chars)


def pod_template_hash(lab: str, template: str) -> str:
    """The 10-character `pod-template-hash` of a pod template: the label every pod of one
    ReplicaSet carries, and the middle part of their names. `template`: its canonical form
    (lab.topology.pods.canonical_template). As Kubernetes' ComputeHash hashes the PodTemplateSpec,
    any change of the template (an image, a label, an env value, kubectl rollout restart's
    restartedAt annotation) gives another hash, so another ReplicaSet and new pod names; sha256
    rather than fnv, with the lab's name, so one file gives the same names in every run."""
    return _safe_encode(_digest(f"{lab}/{template}"), TEMPLATE_HASH_LENGTH)


def legacy_template_hash(lab: str, deployment: str) -> str:
    """The hash a lab recorded before it came from the template (from the Deployment's name): a
    record that holds no hash for a Deployment's pods named them with this."""
    return _safe_encode(_digest(f"{lab}/{deployment}"), TEMPLATE_HASH_LENGTH)


def replicaset_name(deployment: str, template_hash: str) -> str:
    """`<deployment>-<pod-template-hash>`; long deployment names are cut so pod names stay <= 63."""
    base = deployment[:MAX_DEPLOYMENT_PART].rstrip("-.") or deployment[:1]
    return f"{base}-{template_hash}"


def deployment_pod_names(lab: str, deployment: str, template_hash: str, replicas: int,
                         ordinals: list[int] | None = None) -> list[str]:
    """The names of a ReplicaSet's pods, e.g. nginx-6bfd886fb5-fvngf: deterministic and unique.

    `ordinals`: which of the deployment's pods these are (default 0 .. replicas-1). A pod made to
    replace another gets the next ordinal, so a new name, as the ReplicaSet controller gives it a
    new random suffix; ordinals count across the Deployment's ReplicaSets."""
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    if replicas > len(SAFE_ALPHABET) ** SUFFIX_LENGTH:
        raise ValueError(f"{replicas} replicas cannot have distinct {SUFFIX_LENGTH}-character suffixes")
    base = replicaset_name(deployment, template_hash)
    names: list[str] = []
    taken: set[str] = set()
    for index in (ordinals if ordinals is not None else range(replicas)):
        attempt = 0
        while True:
            # A collision (about 1 in 14 million per pair) re-hashes with a counter rather than failing.
            key = f"{lab}/{deployment}/{index}" + (f"/{attempt}" if attempt else "")
            name = f"{base}-{_safe_encode(_digest(key), SUFFIX_LENGTH)}"
            if name not in taken:
                break
            attempt += 1
        taken.add(name)
        names.append(name)
    return names


def veth_name(lab: str, pod: str) -> str:
    """The host side of a pod's veth: "veth" + 8 hex characters, as the CNI bridge plugin names it.

    Hashing keeps it within the kernel's 15-character limit whatever the pod is called,
    and distinct across labs that share the host.
    """
    return "veth" + hashlib.sha256(f"{lab}/{pod}".encode("utf-8", "surrogatepass")).hexdigest()[:8]


def netns_name(lab: str, obj: str) -> str:
    """The network namespace of a node, pod or outside host, as `ip netns list` shows it."""
    return f"{lab}-{obj}"


# ---------------------------------------------------------------------------------------
# What a name may be. Each check returns why a name is not valid and how to fix it, or None.
# ---------------------------------------------------------------------------------------
IFNAMSIZ = 15  # the kernel's limit for interface names, without the terminating NUL
HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

_ALNUM = "lowercase letters a-z, digits and '-', starting and ending with a letter or digit"
HOST_RULE = (f"use {_ALNUM}, at most {IFNAMSIZ} characters: the kernel's limit for interface names (IFNAMSIZ), "
             "because the name also names its port on the underlay switch")
KUBE_RULE = f"a Kubernetes name (DNS-1123 subdomain) uses {_ALNUM} (dots between parts), at most 63 characters"
LABEL_RULE = f"a DNS label uses {_ALNUM}, at most 63 characters"
LAB_RULE = f"a lab name uses {_ALNUM}, at most 24 characters: it prefixes every namespace name (<lab>-node1)"


def _shown(name: str) -> str:
    """The name quoted and cut short: a rejected name may be megabytes of junk."""
    text = repr(name)
    return text if len(text) <= 40 else text[:37] + "..."


def suggest(name: str, max_length: int) -> str | None:
    """A valid lowercase name close to the one given (My_Node -> my-node), for the message."""
    ascii_only = name.encode("ascii", "ignore").decode().lower()
    fixed = re.sub(r"[^a-z0-9]+", "-", ascii_only).strip("-")[:max_length].strip("-")
    return fixed if fixed and fixed != name else None


def _problem(name: str, what: str, pattern: re.Pattern[str], max_length: int, rule: str) -> str | None:
    # fullmatch, not match with $: "node1\n" must not pass.
    if pattern.fullmatch(name) and len(name) <= max_length:
        return None
    if not name:
        return f"{what} is empty; {rule}"
    suggestion = suggest(name, max_length)
    try_this = f"; try '{suggestion}'" if suggestion else ""
    if pattern.fullmatch(name):
        return f"{what} {_shown(name)} is {len(name)} characters; {rule}{try_this}"
    return f"{what} {_shown(name)} is not valid: {rule}{try_this}"


def host_name_problem(name: str, what: str = "node name") -> str | None:
    """Nodes and outside hosts: their names are also interface names on the underlay switch."""
    return _problem(name, what, HOST_NAME, IFNAMSIZ, HOST_RULE)


def kube_name_problem(name: str, what: str = "pod name") -> str | None:
    """Pods and deployments; 63 rather than 253 characters because a pod's name is its hostname."""
    return _problem(name, what, DNS_SUBDOMAIN, 63, KUBE_RULE)


def dns_label_problem(name: str, what: str = "namespace") -> str | None:
    return _problem(name, what, DNS_LABEL, 63, LABEL_RULE)


def lab_name_problem(name: str) -> str | None:
    return _problem(name, "lab name", LAB_NAME, 24, LAB_RULE)


def interface_name_problem(name: str) -> str | None:
    """The kernel's dev_valid_name(), plus ASCII only."""
    if not name or len(name) > IFNAMSIZ:
        return f"interface name {_shown(name)} must be 1-{IFNAMSIZ} characters (IFNAMSIZ, the kernel's limit)"
    if name in (".", "..") or any(c in "/:" or c.isspace() or not c.isascii() or not c.isprintable() for c in name):
        return (f"interface name {_shown(name)} is not valid: use ASCII letters, digits, '-', '_' or '.', "
                "no '/', ':' or spaces, and not '.' or '..'")
    if name == "lo":
        return "'lo' is the loopback device every namespace already has; pick another name, e.g. cni0"
    return None
