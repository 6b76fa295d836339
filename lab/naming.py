"""Names podlab generates: kubectl-style pod names, veth names, namespace names.

Kubernetes names a Deployment's pods `<deployment>-<pod-template-hash>-<suffix>`, e.g.
`nginx-6bfd886fb5-fvngf`: the ReplicaSet's name plus five random characters. Both parts
use Kubernetes' "safe" alphabet (no vowels, so no accidental words; no 0, 1 or 3, which
look like letters). podlab derives them from sha256 instead of randomness, so one file
always gives the same names and a trainee's notes stay valid across `down` and `up`.
"""
from __future__ import annotations

import hashlib

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


def pod_template_hash(lab: str, deployment: str) -> str:
    """The 10-character hash shared by every pod of a deployment (its `pod-template-hash` label)."""
    return _safe_encode(_digest(f"{lab}/{deployment}"), TEMPLATE_HASH_LENGTH)


def replicaset_name(lab: str, deployment: str) -> str:
    """`<deployment>-<pod-template-hash>`; long deployment names are cut so pod names stay <= 63."""
    base = deployment[:MAX_DEPLOYMENT_PART].rstrip("-.") or deployment[:1]
    return f"{base}-{pod_template_hash(lab, deployment)}"


def deployment_pod_names(lab: str, deployment: str, replicas: int) -> list[str]:
    """The names of a deployment's pods, e.g. nginx-6bfd886fb5-fvngf: deterministic and unique."""
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    if replicas > len(SAFE_ALPHABET) ** SUFFIX_LENGTH:
        raise ValueError(f"{replicas} replicas cannot have distinct {SUFFIX_LENGTH}-character suffixes")
    base = replicaset_name(lab, deployment)
    names: list[str] = []
    taken: set[str] = set()
    for index in range(replicas):
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
