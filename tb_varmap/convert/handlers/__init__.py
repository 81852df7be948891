"""Handler families; importing this package registers every handler."""

from tb_varmap.convert.handlers import (  # noqa: F401
    activations, conv, dense, elementwise, embedding, identity, normalization, pooling,
    reductions,
    shape)
