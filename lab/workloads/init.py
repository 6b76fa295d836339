"""A pod's init containers, run by the workload agent as the kubelet runs them.

Once the pod's network is set up, each init container runs in turn in the pod's network and UTS
namespaces (so `$(hostname)` is the pod's name) with its volume mounts, and must exit 0 before the
next starts; only then do the pod's containers start (and its built-in servers listen). One that
fails is run again with back-off, for a pod's restartPolicy Always, and never the containers after
it. Its status follows the kubelet's, which `podlab get pods` prints as kubectl does
(lab.render): Running while it runs (Init:0/1), Terminated with reason Error after a failure
(Init:Error), then Waiting with reason CrashLoopBackOff for the back-off (Init:CrashLoopBackOff),
Terminated with reason Completed and exit code 0 once done.

The agent is passed in (duck-typed: network, set, run_once, serve) so that this module does not
import the one that imports it.
"""
from __future__ import annotations

import asyncio
from typing import Any

from lab.workloads import backoff

# How long a failed init container shows as Terminated (Init:Error) before its back-off begins to
# show (Init:CrashLoopBackOff): about the kubelet's pod-lifecycle relist period, which notices the exit.
ERROR_SHOWN = 1.0
START_ERROR = 128     # the exit code containerd records for a container that could not start (StartError)


async def initialize(agent: Any, pod: Any) -> None:
    """Run the pod's init containers in order, each to completion; then start its containers."""
    await agent.network.wait()
    for c in pod.init.values():
        if not await run_to_completion(agent, pod, c):
            return
    if not pod.gone:
        await agent.serve(pod, None)


async def run_to_completion(agent: Any, pod: Any, c: Any) -> bool:
    """Run an init container until it exits 0 (True), backing off after each failure; False if the
    pod went meanwhile."""
    failures = 0
    while not pod.gone:
        c.exit_code = None
        code, reason = await agent.run_once(pod, c)
        if pod.gone:
            return False
        if code == 0:
            c.exit_code = 0
            agent.set(pod, c, "Terminated", "exited with code 0", "Completed")
            return True
        c.exit_code = START_ERROR if code is None else code
        agent.set(pod, c, "Terminated", reason, "StartError" if code is None else "Error")
        delay = backoff(failures)
        failures += 1
        shown = min(ERROR_SHOWN, delay / 2)
        await asyncio.sleep(shown)
        if pod.gone:
            return False
        agent.set(pod, c, "Waiting", f"back-off {delay:g}s restarting failed init container: {reason}",
                  "CrashLoopBackOff")
        await asyncio.sleep(delay - shown)
        c.restarts += 1
    return False
