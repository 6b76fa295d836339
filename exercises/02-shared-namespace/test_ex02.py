"""Grader of exercise 02: containers of one pod share its network namespace (and its ports)."""


def _wanted_port(topology) -> str:
    """The port metrics asks for, from the lab's design: the last word of its command."""
    pod = next(p for p in topology.pods if p.name == "web")
    metrics = next(c for c in pod.containers if c.name == "metrics")
    return metrics.command[-1]


def test_sidecar_on_localhost(podlab, podlab_exercise):
    """you asked the sidecar on localhost, from inside pod web"""
    given = podlab_exercise.answer("token")
    page = podlab.http("web", "127.0.0.1", port=9000, timeout=3)
    assert page.ok, f"the sidecar does not answer on localhost:9000 inside pod web ({page.error})"
    assert given == page.text.strip(), (f"{given!r} is not what the sidecar answers; ask it from inside the pod: "
                                        f"'sudo podlab exec web -- curl -s localhost:9000'")


def test_clashing_port(podlab, podlab_exercise):
    """you found the port that metrics cannot get"""
    given = podlab_exercise.answer("port")
    wanted = _wanted_port(podlab.topology)
    assert given == wanted, f"metrics does not fail on port {given}; look at what it runs and at its error"
    assert int(wanted) in podlab.listening("web"), f"nothing listens on port {wanted} in pod web right now"


def test_port_holder(podlab, podlab_exercise):
    """you found which container of web already holds that port"""
    given = podlab_exercise.answer("holder").lower()
    wanted = int(_wanted_port(podlab.topology))
    pod = next(p for p in podlab.topology.pods if p.name == "web")
    holders = [c.name for c in pod.containers if wanted in c.ports]
    assert holders and wanted in podlab.listening("web"), f"no container of web listens on port {wanted}"
    assert given == holders[0], (f"container {given!r} does not hold port {wanted}; "
                                 f"the containers of web are: {', '.join(c.name for c in pod.containers)}")
