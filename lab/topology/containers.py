"""A pod's containers: image:/command: shorthand or a containers: list, their ports and volume
mounts; and its initContainers:, commands run to completion before the containers start.

The containers of a pod share one network namespace, so a port is declared once per pod.
"""
from __future__ import annotations

from typing import Any

from lab import naming, podenv
from lab.model import Container, ContainerPort, FieldRef
from lab.topology.checker import Checker, YamlPath, choice, has_type
from lab.topology.schema import (CONTAINER_SCHEMA, ENV_SCHEMA, INIT_CONTAINER_SCHEMA, PORT_SCHEMA, PROTOCOLS, Field,
                                 is_port_name)
from lab.topology.volumes import volume_mounts
from lab.topology.wording import describe, quote_hint, show


def _image_container_name(image: str) -> str:
    """docker.io/library/nginx:1.25 -> nginx: the container name kubectl run would pick."""
    last = image.split("@")[0].rstrip("/").split("/")[-1]
    return last.split(":")[0]


def _command(checker: Checker, path: YamlPath, raw: list[Any]) -> tuple[str, ...]:
    words = []
    for index, word in enumerate(raw):
        if isinstance(word, str) and "\0" not in word:
            words.append(word)
        elif isinstance(word, str):
            checker.add(path + (index,), "a command argument cannot contain a NUL character")
        else:
            checker.add(path + (index,), f"command arguments are strings, got {describe(word)}{quote_hint(word)}")
    return tuple(words)


def _image(checker: Checker, path: YamlPath, image: str) -> str:
    """The image reference; "" when it is not one (and the problem is reported)."""
    if not image or any(c.isspace() or not c.isprintable() for c in image):
        checker.add(path, f"image {show(image)} is not an image reference; write e.g. 'image: nginx'")
        return ""
    return image


def _ports(checker: Checker, path: YamlPath, raw: list[Any],
           used: dict[tuple[int, str], str]) -> tuple[tuple[int, ...], tuple[ContainerPort, ...]]:
    """Container ports, and as declared; `used` maps (port, protocol) to the container path, across the pod."""
    ports = []
    specs = []
    for index, item in enumerate(raw):
        at = path + (index,)
        protocol = "TCP"
        spec: dict[str, Any] = {}
        if isinstance(item, dict):
            spec = checker.fields(at, item, PORT_SCHEMA, "a port") or {}
            protocol = choice(checker, at + ("protocol",), spec.get("protocol", "TCP"), PROTOCOLS, "protocol") or "TCP"
            if "name" in spec and not is_port_name(spec["name"]):
                checker.add(at + ("name",), f"port name {show(spec['name'])} must be at most 15 lowercase letters, "
                                            "digits and '-' with at least one letter (an IANA service name like http)")
            if "hostPort" in spec and not 1 <= spec["hostPort"] <= 65535:
                checker.add(at + ("hostPort",), f"hostPort {spec['hostPort']} is out of range: ports are 1..65535")
                del spec["hostPort"]
            item = spec.get("containerPort")
            if item is None:
                continue
            at = at + ("containerPort",)
        if not has_type(item, (int,)):
            hint = f"; remove the quotes: {item.strip()}" if isinstance(item, str) and item.strip().isdigit() else ""
            checker.add(at, f"a port is a number 1..65535 or a mapping like {{containerPort: 80, name: http}}, "
                            f"got {describe(item)}{hint}")
        elif not 1 <= item <= 65535:
            checker.add(at, f"port {item} is out of range: ports are 1..65535")
        elif (item, protocol) in used:
            checker.add(at, f"port {item}/{protocol} is already declared by {used[(item, protocol)]}: the containers "
                            "of a pod share one network namespace, so only one can listen on it")
        else:
            used[(item, protocol)] = checker.where(path[:-1])
            ports.append(item)
            specs.append(ContainerPort(item, protocol, spec.get("name", ""), spec.get("hostPort")))
    return tuple(ports), tuple(specs)


def _container(checker: Checker, path: YamlPath, raw: Any, used_ports: dict[tuple[int, str], str],
               volumes: set[str], schema: dict[str, Field] = CONTAINER_SCHEMA,
               what: str = "a container") -> Container | None:
    spec = checker.fields(path, raw, schema, what)
    if spec is None or "name" not in spec:
        return None
    problem = naming.dns_label_problem(spec["name"], "container name")
    if problem:
        checker.add(path + ("name",), problem)
    image = _image(checker, path + ("image",), spec["image"]) if "image" in spec else Container.image
    command = _command(checker, path + ("command",), spec.get("command", []))
    ports, port_specs = _ports(checker, path + ("ports",), spec.get("ports", []), used_ports)
    mounts = volume_mounts(checker, path + ("volumeMounts",), spec.get("volumeMounts", []), volumes)
    env = _env(checker, path + ("env",), spec.get("env", []))
    return Container(spec["name"], image, ports, command, port_specs, mounts, env)


def _env(checker: Checker, path: YamlPath, raw: list[Any]) -> tuple[tuple[str, str | FieldRef], ...]:
    """env: [{name: GREETING, value: hello}, {name: POD_IP, valueFrom: {fieldRef: {fieldPath:
    status.podIP}}}]: what a command container's process gets in its environment (a later entry of
    one name wins, as the kubelet makes it), a value or the pod field the kubelet fills it in from
    (lab.podenv). A change of it, its order too, is a new pod template: the Deployment rolls."""
    out: dict[str, str | FieldRef] = {}
    for index, item in enumerate(raw):
        spec = checker.fields(path + (index,), item, ENV_SCHEMA, "an environment variable")
        if spec is None or "name" not in spec:
            continue
        name = spec["name"]
        if (problem := podenv.name_problem(name)) is not None:
            checker.add(path + (index, "name"), f"environment variable name {show(name)} is not valid: {problem}")
        elif spec.get("valueFrom") is not None and spec.get("value"):
            checker.add(path + (index, "valueFrom"), "may not be specified when `value` is not empty")
        elif spec.get("valueFrom") is not None:
            source = podenv.ValueFrom(spec["valueFrom"])
            if source.not_emulated:
                checker.add(path + (index, "valueFrom"), "a Secret, a ConfigMap or a resource field is not emulated: "
                                                         "give the variable a value")
            elif source.problem is not None:
                checker.add(path + (index, "valueFrom", *source.where), source.problem)
            else:
                out.pop(name, None)
                out[name] = FieldRef(str(source.field_path))
        elif "\0" in spec.get("value", ""):
            checker.add(path + (index, "value"), "an environment variable's value cannot contain a NUL character")
        else:
            out.pop(name, None)
            out[name] = spec.get("value", "")
    return tuple(out.items())


def _unique(checker: Checker, path: YamlPath, containers: list[Container | None],
            first_use: dict[str, YamlPath]) -> tuple[Container, ...]:
    """The containers whose names no earlier one took (init containers and containers share one
    set of names, as in Kubernetes); `first_use` carries the names across calls."""
    kept = []
    for index, container in enumerate(containers):
        if container is None:
            continue
        if container.name in first_use:
            checker.add(path + (index, "name"),
                        f"container name {show(container.name)} is already used in this pod by "
                        f"{checker.where(first_use[container.name])}: names are unique within a pod")
            continue
        first_use[container.name] = path + (index, "name")
        kept.append(container)
    return tuple(kept)


def pod_init_containers(checker: Checker, path: YamlPath, raw: list[Any], volumes: set[str],
                        first_use: dict[str, YamlPath]) -> tuple[Container, ...]:
    """initContainers:, each a command (it must end: a built-in image's server never would)."""
    at = path + ("initContainers",)
    parsed = [_container(checker, at + (index,), item, {}, volumes, INIT_CONTAINER_SCHEMA, "an init container")
              for index, item in enumerate(raw)]
    for index, container in enumerate(parsed):
        if container is not None and not container.command:
            checker.add(at + (index, "command"), f"init container {show(container.name)} needs a command: it must "
                                                 "run to completion, e.g. command: [sh, -c, 'echo hi > /work/x']")
    return _unique(checker, at, parsed, first_use)


def pod_containers(checker: Checker, path: YamlPath, spec: dict[str, Any], what: str,
                   volumes: set[str] = frozenset(),
                   first_use: dict[str, YamlPath] | None = None) -> tuple[Container, ...]:
    shorthand = [k for k in ("image", "command") if k in spec]
    if "containers" in spec and shorthand:
        checker.add(path + (shorthand[0],), f"use either image:/command: (one container) or containers: (a list), "
                                            f"not both: move {shorthand[0]}: into a container")
        return ()
    if "containers" in spec:
        if not spec["containers"]:
            checker.add(path + ("containers",), f"containers: is empty; {what} needs at least one container")
        used_ports: dict[tuple[int, str], str] = {}
        parsed = [_container(checker, path + ("containers", index), raw, used_ports, volumes)
                  for index, raw in enumerate(spec["containers"])]
        return _unique(checker, path + ("containers",), parsed, {} if first_use is None else first_use)
    if "image" not in spec:
        hint = "command: goes with an image: add 'image: busybox'" if "command" in spec else \
            "add 'image: busybox' (or nginx, echoserver), or a containers: list"
        checker.add(path + tuple(shorthand[:1]), f"{what} needs at least one container: {hint}")
        return ()
    image = _image(checker, path + ("image",), spec["image"])
    name = _image_container_name(image)
    if image and naming.dns_label_problem(name, "container name"):
        checker.add(path + ("image",), f"the container would be named {show(name)} after the image, which is not a "
                                       f"DNS label; use containers: [{{name: app, image: {image}}}] to name it")
    if first_use and name in first_use:
        checker.add(path + ("image",), f"the container would be named {show(name)} after the image, as an init "
                                       f"container of this pod is; use containers: [{{name: app, image: {image}}}]")
    return (Container(name, image, (), _command(checker, path + ("command",), spec.get("command", []))),)
