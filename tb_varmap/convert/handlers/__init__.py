"""Handler families; importing this package registers every handler."""

from tb_varmap.convert.handlers import (  # noqa: F401
    activations, conv, dense, elementwise, embedding, identity, normalization, pooling,
    reductions,
    shape)
# legacy families: RNNs (dynamic_rnn, static_rnn), layer norm, GELU, partitioned lookups
from tb_varmap.convert.handlers import (  # noqa: F401,E402,I001
    attention, layernorm, lookup, rnn, rnn_block, rnn_static)
