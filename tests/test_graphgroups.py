"""Crowded levels of the /graph scope tree get virtual series and range scopes."""

import collections
import copy

from tb_varmap.graphgroups import MAX_CHILDREN, group_crowded_levels


def graph_with(names, scope_names=()):
    scopes = [{"id": 0, "name": "", "parent": None, "node_count": 0, "machinery": False}]
    for i, name in enumerate(scope_names, start=1):
        scopes.append({"id": i, "name": name, "parent": 0, "node_count": 1, "machinery": True})
    nodes = [{"id": i, "name": name, "op": "Mean", "scope": 0, "inputs": [], "machinery": i % 2 == 0}
             for i, name in enumerate(names)]
    return {"nodes": nodes, "scopes": scopes}


def children_count(graph):
    count = collections.Counter()
    for scope in graph["scopes"]:
        if scope["parent"] is not None:
            count[scope["parent"]] += 1
    for node in graph["nodes"]:
        count[node["scope"]] += 1
    return count


def test_series_and_ranges_keep_every_level_small():
    names = ["Mean"] + ["Mean_%d" % i for i in range(1, 3000)] + ["op%03d" % i for i in range(150)]
    graph = graph_with(names, scope_names=["average_gradients_%d" % i for i in range(500)])
    before = copy.deepcopy(graph)
    grouped = group_crowded_levels(graph)
    assert graph == before  # the cached original is not changed
    assert max(children_count(grouped).values()) <= MAX_CHILDREN
    virtual = {s["id"]: s for s in grouped["scopes"] if s.get("virtual")}
    names_of = {s["name"] for s in virtual.values()}
    assert {"Mean_*", "average_gradients_*"} <= names_of
    assert [n["name"] for n in grouped["nodes"]] == names  # nodes keep names and order
    parents = {s["id"]: s["parent"] for s in grouped["scopes"]}
    for node in grouped["nodes"]:  # every node still hangs under the root
        scope, depth = node["scope"], 0
        while scope is not None:
            scope, depth = parents[scope], depth + 1
        assert depth <= 6
    series = next(s for s in virtual.values() if s["name"] == "Mean_*")
    assert series["node_count"] == 3000 and series["machinery"] is False
    gradients = next(s for s in virtual.values() if s["name"] == "average_gradients_*")
    assert gradients["machinery"] is True and gradients["node_count"] == 500


def test_small_levels_are_left_alone():
    graph = graph_with(["a", "b", "Mean_1", "Mean_2", "Mean_3", "Mean_4", "Mean_5"])
    assert group_crowded_levels(graph) == graph
