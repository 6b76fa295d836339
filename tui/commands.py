"""Command palette: every pod, node and outside host by name or address ("go to ...").

The screen's actions come through App.get_system_commands (see tui.app); this provider adds
the cluster's entities, so a pod in a 1000-pod lab is a few keystrokes away.
"""
from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

MAX_HITS = 50


class EntityProvider(Provider):
    def _entities(self) -> list:
        screen = self.screen
        cluster = getattr(screen, "cluster", None)
        return list(cluster.entities()) if cluster is not None else []

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        found = 0
        for e in self._entities():
            text = f"go to {e.kind} {e.name} {e.ip or ''}".rstrip()
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(self.screen.goto, e.name),  # type: ignore[attr-defined]
                          help=f"network namespace {e.netns}")
                found += 1
                if found >= MAX_HITS:
                    return

    async def discover(self) -> Hits:
        for e in self._entities()[:MAX_HITS]:
            yield DiscoveryHit(f"go to {e.kind} {e.name}", partial(self.screen.goto, e.name),  # type: ignore[attr-defined]
                               help=e.ip or e.netns)
