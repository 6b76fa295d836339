"""The cluster tree: the underlay, each node with its pods, outside hosts; and a filter box.

Large labs stay responsive: a node's pods become tree lines only when the node is expanded,
and the filter shows at most MAX_MATCHES matching pods. Moving the cursor posts EntityChosen
after a short pause, so holding an arrow key over 1000 pods does not read 1000 namespaces.
"""
from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Input, Tree
from textual.widgets.tree import TreeNode

from tui.messages import EntityChosen
from tui.source import Cluster, Entity

MAX_MATCHES = 300
SETTLE = 0.15          # seconds the cursor rests before the entity is read
STATUS_STYLE = {"Running": "green", "Ready": "green", "planned": "cyan", "ContainerCreating": "yellow",
                "Unknown": "red", "NotReady": "red", "Error": "red", "CrashLoopBackOff": "red"}


def entity_label(e: Entity) -> Text:
    dot = Text("● ", style=STATUS_STYLE.get(e.status, "dim")) if e.kind in ("pod", "node") else Text("")
    if e.kind == "underlay":
        return Text.assemble(("underlay ", "bold"), (e.detail, "dim"))
    label = Text.assemble(dot, (e.name, "bold" if e.kind == "node" else ""))
    if e.ip:
        label.append(f" {e.ip}", style="dim")
    if e.detail == "hostNetwork":
        label.append(" hostNet", style="magenta")
    return label


def matches(e: Entity, query: str) -> bool:
    q = query.lower()
    return q in e.name.lower() or (e.ip is not None and e.ip.startswith(q))


class ClusterTree(Vertical):
    """Filter box over a lazily loaded Tree of Entities."""

    BINDINGS = [Binding("slash", "filter", "Filter", show=False)]

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        self.cluster: Cluster | None = None
        self.query_text = ""
        self._settle: Timer | None = None
        self._node_lines: dict[str, TreeNode[Entity | None]] = {}

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: name or IP  (/)", id="filter", compact=True)
        tree: Tree[Entity | None] = Tree("loading the lab …", id="tree")
        tree.guide_depth = 2
        yield tree

    @property
    def tree(self) -> Tree[Entity | None]:
        return self.query_one("#tree", Tree)

    def show(self, cluster: Cluster) -> None:
        """Show a (re-read) cluster, keeping expanded nodes and the cursor where they were."""
        old, self.cluster = self.cluster, cluster
        if old is None:
            self._rebuild()
        elif [e.name for e in old.entities()] != [e.name for e in cluster.entities()]:
            # pods came or went (podlab apply, delete, scale): the lines again, the open nodes kept open
            self._rebuild(keep_open={name for name, line in self._node_lines.items() if line.is_expanded})
        else:
            self._relabel()

    def _rebuild(self, keep_open: set[str] | frozenset[str] = frozenset()) -> None:
        c = self.cluster
        if c is None:
            return
        tree = self.tree
        cursor = tree.cursor_node.data if tree.cursor_node is not None else None
        tree.clear()
        tree.root.set_label(Text.assemble((f"lab {c.lab}", "bold"), (f" {c.mode}", "cyan"),
                                          (f" · {len(c.nodes)} nodes, {c.pod_count} pods", "dim")))
        tree.root.expand()
        self._node_lines = {}
        q = self.query_text
        if not q or matches(c.underlay, q):
            tree.root.add_leaf(entity_label(c.underlay), c.underlay)
        shown = found = 0
        for n in c.nodes:
            pods = c.pods.get(n.name, ())
            if q and not matches(n, q):
                hits = [p for p in pods if matches(p, q)]
                found += len(hits)
                hits = hits[:max(0, MAX_MATCHES - shown)]
                if not hits:
                    continue
                line = tree.root.add(entity_label(n), n, expand=True)
                for p in hits:
                    line.add_leaf(entity_label(p), p)
                shown += len(hits)
            else:
                line = tree.root.add(entity_label(n), n, allow_expand=bool(pods))
                if n.name in keep_open and pods:
                    self._fill(line)
                    line.expand()
            self._node_lines[n.name] = line
        outside = [h for h in c.outside if not q or matches(h, q)]
        if outside:
            group = tree.root.add(Text("outside hosts", style="bold"), None, expand=True)
            for h in outside:
                group.add_leaf(entity_label(h), h)
        if found > shown:
            tree.root.add_leaf(Text(f"… {found - shown} more matching pods: type more", style="yellow"), None)
        if cursor is not None and (line := self._find_line(cursor.name)) is not None:
            _ = tree.last_line     # lays the new lines out, so the cursor can be put on one
            tree.move_cursor(line)

    def _relabel(self) -> None:
        """New states (a pod that started, a node that went away) on the lines that exist."""
        c = self.cluster
        if c is None:
            return
        by_name = {e.name: e for e in c.entities()}

        def walk(node: TreeNode[Entity | None]) -> None:
            for child in node.children:
                if child.data is not None and child.data.name in by_name:
                    fresh = by_name[child.data.name]
                    if fresh != child.data:
                        child.data = fresh
                        child.set_label(entity_label(fresh))
                walk(child)
        walk(self.tree.root)

    def _fill(self, line: TreeNode[Entity | None]) -> None:
        """A node's pods, added the first time it is expanded."""
        n = line.data
        if n is None or n.kind != "node" or line.children or self.cluster is None:
            return
        for p in self.cluster.pods.get(n.name, ()):
            line.add_leaf(entity_label(p), p)

    @on(Tree.NodeExpanded, "#tree")
    def _expanded(self, event: Tree.NodeExpanded[Entity | None]) -> None:
        self._fill(event.node)

    @on(Tree.NodeHighlighted, "#tree")
    def _highlighted(self, event: Tree.NodeHighlighted[Entity | None]) -> None:
        entity = event.node.data
        if entity is None:
            return
        if self._settle is not None:
            self._settle.stop()
        self._settle = self.set_timer(SETTLE, lambda: self.post_message(EntityChosen(entity)))

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self._rebuild()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.tree.focus()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def reveal(self, name: str, announce: bool = True) -> bool:
        """Put the cursor on an entity, loading (or un-filtering) its node's pods if needed."""
        c = self.cluster
        if c is None:
            return False
        e = c.find(name)
        if e is None:
            return False
        line = self._find_line(name)
        if line is None and self.query_text:
            self.query_one("#filter", Input).value = ""
            self.query_text = ""
            self._rebuild()
            line = self._find_line(name)
        if line is None and e.kind == "pod" and e.node in self._node_lines:
            parent = self._node_lines[e.node]
            self._fill(parent)
            parent.expand()
            line = self._find_line(name)
        if line is None:
            return False
        if line.parent is not None:
            line.parent.expand()
        _ = self.tree.last_line    # lays the lines out now, so the new line has its number for the cursor
        self.tree.move_cursor(line)
        self.tree.scroll_to_node(line, animate=False)
        if announce:
            self.post_message(EntityChosen(line.data))  # type: ignore[arg-type]
        return True

    def _find_line(self, name: str) -> TreeNode[Entity | None] | None:
        stack = list(self.tree.root.children)
        while stack:
            node = stack.pop()
            if node.data is not None and node.data.name == name:
                return node
            stack.extend(node.children)
        return None
