"""Which rows `podlab get KIND [NAME ...] [-n NS | -A]` shows, and what it says of the rest, the way
`kubectl get` chooses them (kubectl pkg/cmd/get/get.go over cli-runtime's resource builder):

- a namespaced kind lists one namespace (`default` unless -n), without a NAMESPACE column, or every
  namespace with -A, NAMESPACE first; a cluster-scoped kind (nodes) ignores both;
- names pick rows, in the order given (each is a GET of its own); a name that is not there is
  `Error from server (NotFound): pods "x" not found` on stderr after the rows that were, and the
  command fails; names with -A are refused ("a resource cannot be retrieved by name across all
  namespaces": a name means one object of one namespace);
- nothing to show and no name asked for: "No resources found in NS namespace." on stderr (with -A:
  "No resources found"), and success.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from lab.errors import PodlabError

# kubectl's names for the kinds podlab lists (the plural is what its messages say).
KINDS = {"pods": "pods", "pod": "pods", "po": "pods",
         "nodes": "nodes", "node": "nodes", "no": "nodes",
         "services": "services", "service": "services", "svc": "services",
         "endpoints": "endpoints", "endpoint": "endpoints", "ep": "endpoints",
         "replicasets": "replicasets", "replicaset": "replicasets", "rs": "replicasets",
         "deployments": "deployments", "deployment": "deployments", "deploy": "deployments"}
GROUPED = {"replicasets": "replicasets.apps", "deployments": "deployments.apps"}   # as the API server names them
CLUSTER_SCOPED = {"nodes"}

Row = dict[str, Any]


class Query:
    """What one `get` asks for. (A plain class: a dataclass costs ~2 ms of every command's start.)"""

    def __init__(self, resource: str, names: Sequence[str] = (), namespace: str = "default",
                 all_namespaces: bool = False):
        self.resource = resource                 # kubectl's plural: pods, nodes, services, endpoints
        self.names = tuple(names)
        self.namespace = namespace
        self.all_namespaces = all_namespaces

    @classmethod
    def of(cls, what: str, names: Sequence[str] = (), namespace: str = "default",
           all_namespaces: bool = False) -> "Query":
        """From `get`'s arguments (a kind as kubectl spells it); names with -A are refused, as kubectl."""
        q = cls(KINDS[what], names, namespace, all_namespaces)
        if q.names and q.all_namespaces and q.namespaced:
            raise PodlabError("a resource cannot be retrieved by name across all namespaces "
                              f"(drop -A, and give the namespace with -n: podlab get {q.resource} -n NS "
                              f"{' '.join(q.names)})")
        return q

    @property
    def namespaced(self) -> bool:
        return self.resource not in CLUSTER_SCOPED

    @property
    def namespace_column(self) -> bool:
        """kubectl prints NAMESPACE first only with -A, and never for a cluster-scoped kind."""
        return self.all_namespaces and self.namespaced

    @property
    def key_cells(self) -> int:
        """How many leading cells of a table row name it (for `get -w`): NAME, or NAMESPACE and NAME."""
        return 2 if self.namespace_column else 1

    def in_scope(self, row: Row) -> bool:
        return not self.namespaced or self.all_namespaces or row.get("namespace") == self.namespace

    def select(self, rows: Sequence[Row]) -> tuple[list[Row], list[str]]:
        """The rows shown (in the order of the names asked for, else as listed), and the names not found."""
        scoped = [r for r in rows if self.in_scope(r)]
        if not self.names:
            return scoped, []
        by_name = {r["name"]: r for r in scoped}
        return [by_name[n] for n in self.names if n in by_name], [n for n in self.names if n not in by_name]

    def not_found(self, name: str) -> str:
        return f'Error from server (NotFound): {GROUPED.get(self.resource, self.resource)} "{name}" not found'

    def nothing(self) -> str:
        return ("No resources found" if self.all_namespaces or not self.namespaced
                else f"No resources found in {self.namespace} namespace.")

    def columns(self, columns: list[str], keys: list[str]) -> tuple[list[str], list[str]]:
        """A kind's columns, with NAMESPACE first when kubectl shows it."""
        if self.namespace_column:
            return ["NAMESPACE", *columns], ["namespace", *keys]
        return columns, keys


def report(query: Query, shown: Sequence[Row], missing: Sequence[str], err: TextIO, table: bool = True) -> int:
    """What is said on stderr after the rows: each name not found, or that there was nothing to
    show (for a table: kubectl's -o json prints an empty list and no more); the exit code (1 if a
    name was not found, as kubectl's aggregate of NotFound errors)."""
    for name in missing:
        print(query.not_found(name), file=err)
    if table and not shown and not query.names:
        print(query.nothing(), file=err)
    return 1 if missing else 0
