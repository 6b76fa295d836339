"""Smoke test: the real `podlab tui` in a real terminal (tmux), driven by keys, read with capture-pane.

It runs on a private tmux server (-L) that the test starts and kills, at 80x24.
"""
from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DESIGN = """
mode: vxlan
nodes: [node1, node2]
pods:
  - {name: client, node: node1, image: busybox}
  - {name: web, node: node2, image: nginx}
"""


@pytest.fixture(scope="module")
def lab(lab_from_yaml):
    return lab_from_yaml(DESIGN, prefix="tuit")


class Tmux:
    def __init__(self) -> None:
        self.socket = f"podlab-test-{secrets.token_hex(4)}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                              check=True).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "tui")

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "tui", *keys)

    def wait(self, condition, timeout: float = 15.0, what: str = "") -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")
            time.sleep(0.1)

    def dead(self) -> bool:
        return self("list-panes", "-t", "tui", "-F", "#{pane_dead}").strip() == "1"


def test_podlab_tui_in_a_real_terminal(lab):
    tmux = Tmux()
    command = shlex.join([sys.executable, "-m", "lab", "tui", "--lab", lab.name])
    env = dict(os.environ, TERM="xterm-256color")
    subprocess.run(["tmux", "-L", tmux.socket, "-f", "/dev/null", "new-session", "-d", "-s", "tui", "-x", "80",
                    "-y", "24", "-c", str(ROOT), command], check=True, env=env)
    try:
        tmux("set-option", "-t", "tui", "remain-on-exit", "on")
        # The footer may be drawn after the first kernel read arrives (reads take a few ms): wait for both.
        first = tmux.wait(lambda s: "live: read from the kernel" in s and "10.244.0.2/24" in s and "Help" in s,
                          what="the first screen")
        assert f"lab {lab.name}" in first and "client" in first and "Help" in first   # tree and footer
        assert len(first.splitlines()) <= 24

        tmux.keys("?")
        tmux.wait(lambda s: "podlab — keys" in s, what="the help screen")
        tmux.keys("Escape")
        tmux.wait(lambda s: "podlab — keys" not in s, what="the help to close")

        tmux.keys("2")
        tmux.wait(lambda s: "DESTINATION" in s and "default" in s and "10.244.0.1" in s, what="the routes tab")

        tmux.keys("x")                                   # a shell in the selected pod, the TUI suspended
        tmux.wait(lambda s: "[pod client]" in s, what="the shell prompt")
        tmux.keys("hostname; ip -4 -o addr show eth0", "Enter")
        shell = tmux.wait(lambda s: "inet 10.244.0.2/24" in s, what="the shell's output")   # `ip -o` says inet
        assert "\nclient\n" in shell
        tmux.keys("exit", "Enter")
        tmux.wait(lambda s: "back from the shell in client" in s or ("Links" in s and "Help" in s),
                  what="the TUI to come back")

        tmux.keys("q")
        tmux.wait(lambda s: tmux.dead(), what="podlab tui to quit")
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True)
