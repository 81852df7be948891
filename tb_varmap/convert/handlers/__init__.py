"""Handler families; importing this package registers every handler."""

from tb_varmap.convert.handlers import (  # noqa: F401
    activations, conv, dense, elementwise, embedding, identity, normalization, pooling,
    reductions,
    shape)
# legacy families (dynamic_rnn LSTM/GRU, layer norm, partitioned embedding lookups)
from tb_varmap.convert.handlers import attention, layernorm, lookup, rnn  # noqa: F401,E402,I001
