"""What `podlab exec POD [-c CONTAINER] -- CMD` runs in: one container of the pod, and that
container's view of the files, as `kubectl exec` runs CMD in the container's own mount namespace.

Which container: the one -c names, else the pod's first, with kubectl's notice on stderr when the
pod has others (kubectl pkg/cmd/util/podcmd FindOrDefaultContainerByName: `Defaulted container
"nginx" out of: nginx, init (init)`); a name the pod lacks is kubectl's "container x is not valid for
pod y out of: ...". An init container has run to completion before the pod's containers started:
the kubelet has no running container of that name to exec in.

The view: the pod's files from the kubelet (resolv.conf, hosts) and the container's volumes at its
mountPaths, planned by lab.engine.mountns as the workload agent plans them for the container's own
processes (lab.workloads.agent `view`), so `cat /usr/share/nginx/html/index.html` in seed 001's
nginx shows the page its init container wrote into the emptyDir. A missing mountPath is made in a
writable layer of the exec's own, staged beside the container's in the pod's directory and removed
when the command ends: the volumes are shared with the container, as in Kubernetes, the rest of
the writable layer is not (a built-in workload has no process whose layer it could share).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from lab.engine import mountns
from lab.errors import PodlabError
from lab.model import Container, Pod
from lab.workloads import volumes


def all_names(pod: Pod) -> str:
    """kubectl's list of a pod's containers: its containers, then its init containers marked (init)."""
    return ", ".join([c.name for c in pod.containers] + [f"{c.name} (init)" for c in pod.init_containers])


def pick(pod: Pod, name: str | None, err: TextIO) -> Container:
    """The container an exec runs in (the first when none is named, saying so if there was a choice)."""
    if not pod.containers:
        raise PodlabError(f"pod {pod.namespace}/{pod.name} does not have any containers")
    if name is None:
        first = pod.containers[0]
        if len(pod.containers) > 1 or pod.init_containers:
            print(f'Defaulted container "{first.name}" out of: {all_names(pod)}', file=err)
        return first
    chosen = next((c for c in pod.containers if c.name == name), None)
    if chosen is not None:
        return chosen
    if any(c.name == name for c in pod.init_containers):
        raise PodlabError(f'container {name} of pod {pod.name} is an init container: it ran to completion before '
                          f'the pod\'s containers started, so none runs to exec in (kubelet: container not found '
                          f'("{name}")); exec in one of: {", ".join(c.name for c in pod.containers)}')
    raise PodlabError(f"container {name} is not valid for pod {pod.name} out of: {all_names(pod)}")


@contextmanager
def view(lab: str, pod: Pod, container: Container, files: Sequence[tuple[str, str]]) -> Iterator[mountns.Plan | None]:
    """The container's mounts for a process started while this lasts: `files` (the kubelet's,
    (file, path in the pod)) and its volumes; None when it has no volumes (then nsexec mounts the
    files alone, as before). Its staging goes when the `with` ends."""
    if not container.volume_mounts:
        yield None
        return
    missing = [m.volume for m in container.volume_mounts
               if not volumes.volume_dir(lab, pod.name, m.volume).is_dir()]
    if missing:
        raise PodlabError(f"pod {pod.name}'s volumes ({', '.join(missing)}) are not made yet: the workload agent "
                          f"makes them when it starts the pod; see 'podlab get pods {pod.name} --lab {lab}'")
    # Container names are DNS labels (no '.'): this never is a container's own staging.
    scratch = volumes.mounts_dir(lab, pod.name, f"{container.name}.exec-{os.getpid()}")
    try:
        try:
            plan = volumes.stage(lab, pod.name, scratch, files,
                                 [(m.volume, m.mount_path, m.read_only) for m in container.volume_mounts])
        except mountns.MountError as e:
            raise PodlabError(f"container {container.name} of pod {pod.name}: {e}") from None
        yield plan
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
