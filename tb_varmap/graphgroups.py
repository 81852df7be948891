"""Keeps every level of the /graph scope tree small enough to draw.

Training graphs repeat names by the thousand at one level (`average_gradients_0…2541`,
`save/Assign_1…9095`). Like TensorBoard's series grouping, members of such a series (same
name but for a trailing `_N`) move into one virtual scope `<base>_*`; a level that is still
crowded is split into virtual scopes of consecutive names, recursively. Virtual scopes carry
`"virtual": true`; nodes and real scopes keep their names.
"""

import re

SERIES_MIN = 5          # members before a series is grouped
MAX_CHILDREN = 60       # items one level may show before it is grouped

_SERIES = re.compile(r"^(.*?)(?:_\d+)?$")


def _leaf(name):
    return name.rpartition("/")[2]


def _natural(name):
    """Sort key putting Assign_2 before Assign_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def group_crowded_levels(graph):
    """A copy of `graph` (the /graph JSON) with virtual scopes where a level is crowded.

    Only the scopes and the nodes that move are copied; `graph` itself is not changed."""
    nodes = list(graph["nodes"])
    scopes = [dict(scope) for scope in graph["scopes"]]
    by_id = {scope["id"]: scope for scope in scopes}
    children = {scope["id"]: [] for scope in scopes}
    for scope in scopes:
        if scope["parent"] is not None:
            children[scope["parent"]].append(scope)
    for index, node in enumerate(nodes):
        children.setdefault(node["scope"], []).append(index)
    next_id = max(by_id, default=-1) + 1

    def name_of(item):
        return nodes[item]["name"] if isinstance(item, int) else item["name"]

    def add_scope(parent, name, members):
        nonlocal next_id
        scope = {"id": next_id, "name": name, "parent": parent["id"], "virtual": True,
                 "node_count": sum(1 if isinstance(m, int) else m["node_count"] for m in members),
                 "machinery": all((nodes[m] if isinstance(m, int) else m)["machinery"] for m in members)}
        next_id += 1
        scopes.append(scope)
        by_id[scope["id"]] = scope
        for member in members:
            if isinstance(member, int):
                nodes[member] = dict(nodes[member], scope=scope["id"])
            else:
                member["parent"] = scope["id"]
        children[scope["id"]] = list(members)
        return scope

    def prefix(parent):
        return parent["name"] + "/" if parent["name"] else ""

    todo = [scope_id for scope_id, items in children.items() if len(items) > MAX_CHILDREN]
    while todo:
        parent = by_id[todo.pop()]
        items = children[parent["id"]]
        remaining = items
        if not parent.get("virtual"):
            series = {}
            for item in items:
                series.setdefault(_SERIES.match(_leaf(name_of(item))).group(1), []).append(item)
            remaining = []
            for base, members in sorted(series.items()):
                if len(members) >= SERIES_MIN and len(members) < len(items):
                    grouped = add_scope(parent, prefix(parent) + base + "_*", members)
                    remaining.append(grouped)
                    if len(members) > MAX_CHILDREN:
                        todo.append(grouped["id"])
                else:
                    remaining.extend(members)
        if len(remaining) > MAX_CHILDREN:
            remaining = sorted(remaining, key=lambda item: _natural(name_of(item)))
            size = max(MAX_CHILDREN // 2, -(-len(remaining) // MAX_CHILDREN))
            chunks = []
            for start in range(0, len(remaining), size):
                chunk = remaining[start:start + size]
                label = "%s[%s … %s]" % (prefix(parent), _leaf(name_of(chunk[0])), _leaf(name_of(chunk[-1])))
                chunks.append(add_scope(parent, label, chunk))
                if len(chunk) > MAX_CHILDREN:
                    todo.append(chunks[-1]["id"])
            remaining = chunks
        children[parent["id"]] = remaining
    return dict(graph, nodes=nodes, scopes=scopes)
