"""Handler registry: one handler per TF op type, plus pattern handlers tried first.

A handler is `fn(ctx, node) -> Emit | None` (ctx: builder.Context, node: NodeDef).
It returns what to build for `node` (and any nodes it claims, e.g. MatMul + BiasAdd +
Relu), or None to let the next candidate (pattern → op handler → generic fallback) try.
Raising `Unsupported` (or any error) sends the node to the generic fallback and the
reason into the report.
"""

from dataclasses import dataclass, field
from typing import Any, Callable

HANDLERS: dict[str, "Handler"] = {}   # op type -> handler
PATTERNS: dict[str, "Handler"] = {}   # pattern name -> handler (tried before HANDLERS)


class Unsupported(Exception):
    """A handler cannot map this node; the message says why (goes into the report)."""


@dataclass
class Handler:
    name: str
    fn: Callable
    family: str
    ops: tuple = ()        # op types (patterns: op types it may start at; () = any)


@dataclass
class Weight:
    """One Keras weight to fill: `attr` names it on the built layer (str attribute or
    int index into layer.weights); `value` is assigned exactly."""
    attr: Any
    value: Any
    binding: Any = None          # VariableBinding, or None for a graph constant
    note: str = ""               # e.g. "transposed from [out, in]"
    trainable: bool | None = None  # None: binding.trainable (constants: False)
    index: Any = None            # re-laid-out value: per element, the flat index into
    #                              binding.value it came from (-1: from elsewhere)


@dataclass
class Emit:
    """What a handler wants built. `make(name)` returns a fresh Keras layer; make=None
    means an alias (outputs[0] is inputs[0], e.g. Identity)."""
    make: Callable | None
    inputs: list                 # live TF tensors, in call order
    outputs: list                # TF tensors the layer outputs correspond to
    nodes: list                  # TF nodes covered (claimed)
    name: str = ""               # layer name hint (TF scope / node name)
    weights: list = field(default_factory=list)
    standard: bool = True
    fallback: bool = False       # generic layer standing in for an unmapped op
    reason: str = ""             # why it is a fallback
    error: str = ""              # set when nothing could be built for the node


def _family(fn):
    return fn.__module__.rsplit(".", 1)[-1]


def register(*ops):
    """Register `fn` as the handler of op types `ops`; registering an op twice raises."""
    def deco(fn):
        for op in ops:
            if op in HANDLERS:
                raise ValueError(f"op {op!r} already has a handler "
                                 f"({HANDLERS[op].family}.{HANDLERS[op].fn.__name__})")
        for op in ops:
            HANDLERS[op] = Handler(op, fn, _family(fn), (op,))
        return fn
    return deco


def register_pattern(name, ops=()):
    """Register a pattern handler tried (before op handlers) on nodes of `ops` (any if ())."""
    def deco(fn):
        if name in PATTERNS:
            raise ValueError(f"pattern {name!r} is already registered")
        PATTERNS[name] = Handler(name, fn, _family(fn), tuple(ops))
        return fn
    return deco


def load_handlers():
    """Import every handler module (registers them); idempotent."""
    from tb_varmap.convert import handlers  # noqa: F401
    return HANDLERS, PATTERNS


def patterns_for(op):
    return [h for h in PATTERNS.values() if not h.ops or op in h.ops]
