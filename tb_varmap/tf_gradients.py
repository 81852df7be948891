"""Gradients TF 2.x no longer registers for ops TF1 graphs still hold.

tf.contrib registered the gradients of LSTMBlockCell and GRUBlockCell (contrib.rnn's fused
cells) in Python; contrib is gone, the forward ops and their *Grad kernels are still in TF.
Verification differentiates the original graph, so `register_missing()` puts the gradients
back (as contrib wrote them) when TF has none; idempotent.
"""

_DONE = []


def register_missing():
    if _DONE:
        return
    from tensorflow.python.framework import ops

    for op, grad in (("LSTMBlockCell", _lstm_block_cell_grad),
                     ("GRUBlockCell", _gru_block_cell_grad)):
        try:
            ops.gradient_registry.lookup(op)
        except LookupError:
            ops.RegisterGradient(op)(grad)
    _DONE.append(True)


def _lstm_block_cell_grad(op, *grad):
    """contrib.rnn's _LSTMBlockCellGrad: LSTMBlockCellGrad gives d(i, ci, f, o); the
    matmul with [x, h_prev] and the bias are differentiated here."""
    import tensorflow as tf

    x, cs_prev, h_prev, w, wci, wcf, wco, b = op.inputs
    i, cs, f, o, ci, co, _ = op.outputs
    cs_grad, h_grad = grad[1], grad[6]
    cs_grad = tf.zeros_like(cs) if cs_grad is None else cs_grad
    h_grad = tf.zeros_like(h_prev) if h_grad is None else h_grad
    cs_prev_grad, dicfo, wci_grad, wcf_grad, wco_grad = tf.raw_ops.LSTMBlockCellGrad(
        x=x, cs_prev=cs_prev, h_prev=h_prev, w=w, wci=wci, wcf=wcf, wco=wco, b=b, i=i, cs=cs,
        f=f, o=o, ci=ci, co=co, cs_grad=cs_grad, h_grad=h_grad,
        use_peephole=op.get_attr("use_peephole"))
    xh_grad = tf.matmul(dicfo, w, transpose_b=True)
    n_in = tf.shape(x)[1]
    x_grad = xh_grad[:, :n_in]
    h_prev_grad = xh_grad[:, n_in:]
    w_grad = tf.matmul(tf.concat([x, h_prev], 1), dicfo, transpose_a=True)
    b_grad = tf.raw_ops.BiasAddGrad(out_backprop=dicfo)
    return x_grad, cs_prev_grad, h_prev_grad, w_grad, wci_grad, wcf_grad, wco_grad, b_grad


def _gru_block_cell_grad(op, *grad):
    """contrib.rnn's _GRUBlockCellGrad: GRUBlockCellGrad gives d(c_bar) and d(r_bar, u_bar);
    the matmuls with [x, h_prev] and [x, r * h_prev] and the biases are differentiated here."""
    import tensorflow as tf

    x, h_prev, w_ru, w_c, b_ru, b_c = op.inputs
    r, u, c, _ = op.outputs
    d_h = grad[3] if grad[3] is not None else tf.zeros_like(h_prev)
    d_x, d_h_prev, d_c_bar, d_r_bar_u_bar = tf.raw_ops.GRUBlockCellGrad(
        x=x, h_prev=h_prev, w_ru=w_ru, w_c=w_c, b_ru=b_ru, b_c=b_c, r=r, u=u, c=c, d_h=d_h)
    d_w_ru = tf.matmul(tf.concat([x, h_prev], 1), d_r_bar_u_bar, transpose_a=True)
    d_w_c = tf.matmul(tf.concat([x, h_prev * r], 1), d_c_bar, transpose_a=True)
    d_b_ru = tf.raw_ops.BiasAddGrad(out_backprop=d_r_bar_u_bar)
    d_b_c = tf.raw_ops.BiasAddGrad(out_backprop=d_c_bar)
    return d_x, d_h_prev, d_w_ru, d_w_c, d_b_ru, d_b_c
