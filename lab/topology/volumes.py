"""A pod's volumes: (emptyDir, the kind podlab emulates) and each container's volumeMounts:.

    volumes: [{name: html, emptyDir: {}}]
    containers: [{name: nginx, image: nginx, volumeMounts: [{name: html, mountPath: /usr/share/nginx/html}]}]

A mount names a volume of its pod and a path in the container, as Kubernetes checks them (the
volume must exist, a path is mounted once per container, no '..' element, no ':'); podlab adds
what its emulation needs (lab.engine.mountns.mount_path_problem): an absolute path other than
'/', without ',' (overlayfs's option syntax) or control characters.
"""
from __future__ import annotations

from typing import Any

from lab import naming
from lab.engine.mountns import mount_path_problem
from lab.model import Volume, VolumeMount
from lab.topology.checker import Checker, YamlPath
from lab.topology.schema import VOLUME_MOUNT_SCHEMA, VOLUME_SCHEMA
from lab.topology.wording import show


def pod_volumes(checker: Checker, path: YamlPath, raw: list[Any]) -> tuple[Volume, ...]:
    volumes: list[Volume] = []
    first_use: dict[str, YamlPath] = {}
    for index, item in enumerate(raw):
        at = path + (index,)
        spec = checker.fields(at, item, VOLUME_SCHEMA, "a volume")
        if spec is None or "name" not in spec:
            continue
        name = spec["name"]
        problem = naming.dns_label_problem(name, "volume name")
        if problem:
            checker.add(at + ("name",), problem)
        if "emptyDir" not in spec:
            checker.add(at, f"volume {show(name)} needs a source: podlab emulates emptyDir volumes, "
                            "write 'emptyDir: {}'")
            continue
        for key in spec["emptyDir"]:
            checker.add(at + ("emptyDir", key), f"emptyDir takes no settings in podlab ({key} is not emulated): "
                                                "write 'emptyDir: {}'")
        if name in first_use:
            checker.add(at + ("name",), f"volume name {show(name)} is already used in this pod by "
                                        f"{checker.where(first_use[name])}: names are unique within a pod")
            continue
        first_use[name] = at + ("name",)
        volumes.append(Volume(name))
    return tuple(volumes)


def volume_mounts(checker: Checker, path: YamlPath, raw: list[Any], volumes: set[str]) -> tuple[VolumeMount, ...]:
    """A container's volumeMounts:, each naming one of the pod's `volumes`."""
    mounts: list[VolumeMount] = []
    first_use: dict[str, YamlPath] = {}
    for index, item in enumerate(raw):
        at = path + (index,)
        spec = checker.fields(at, item, VOLUME_MOUNT_SCHEMA, "a volume mount")
        if spec is None or "name" not in spec or "mountPath" not in spec:
            continue
        if spec["name"] not in volumes:
            known = ", ".join(sorted(volumes)) or "none"
            checker.add(at + ("name",), f"no volume named {show(spec['name'])} in this pod (its volumes: {known}); "
                                        "declare it under volumes:, e.g. {name: html, emptyDir: {}}")
            continue
        problem = mount_path_problem(spec["mountPath"])
        if problem:
            checker.add(at + ("mountPath",), problem)
            continue
        where = "/" + "/".join(p for p in spec["mountPath"].split("/") if p and p != ".")
        if where in first_use:
            checker.add(at + ("mountPath",), f"{where} is already mounted by {checker.where(first_use[where])}: "
                                             "a path is mounted once per container")
            continue
        first_use[where] = at + ("mountPath",)
        mounts.append(VolumeMount(spec["name"], where, spec.get("readOnly", False)))
    return tuple(mounts)
