"""embedding_lookup families: one table (GatherV2 / ResourceGather) and partitioned
tables ("mod", "div"; ref and resource) each become ONE keras Embedding whose rows are
the table in id order; outputs match the original graph restored from its checkpoint."""
import glob

import numpy as np
import pytest
import tensorflow as tf

from tb_varmap.demo.families import generate_families

COVERS = ["partitioned_embedding"]     # for the registry meta-test
RUNS = ["fam_embedding", "fam_embedding_resource", "fam_embedding_mod",
        "fam_embedding_div", "fam_embedding_div_resource"]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("emb")
    generate_families(str(out), ["fam_embedding", "fam_embedding_mod", "fam_embedding_div"],
                      ["ref", "resource"])
    return str(out)


def _restored(model_dir, ids):
    """y of the original graph restored with its own Saver (ground truth)."""
    meta = sorted(glob.glob(model_dir + "/model.ckpt-*.meta"))[-1]
    g = tf.Graph()
    with g.as_default(), tf.compat.v1.Session(graph=g) as sess:
        tf.compat.v1.train.import_meta_graph(meta).restore(sess, meta[:-len(".meta")])
        return sess.run("y:0", {"ids:0": ids})


@pytest.mark.parametrize("run", RUNS)
def test_lookup_is_one_embedding_in_id_order(logdir, run):
    from tb_varmap.convert import convert_graph
    from tb_varmap.export_run import variable_bindings
    from tb_varmap.run import RunData
    from tb_varmap.tags import empty_tags

    rd = RunData(logdir, run)
    assert rd.roles()["embedding"].role == "embedding.table"
    bindings, _ = variable_bindings(rd, None, empty_tags())
    conv = convert_graph(rd.graph_def, ["ids"], ["y:0"], bindings)
    emb = [lb for lb in conv.layers if lb.keras_class == "Embedding"]
    assert len(emb) == 1 and emb[0].standard
    assert [v["variable"] for v in emb[0].variables] == ["embedding"]
    layer = conv.model.get_layer(emb[0].layer)
    table = rd.read_variable("embedding")
    np.testing.assert_array_equal(layer.embeddings.numpy(), table)
    assert not conv.report["unsupported"]["nodes"]
    ids = np.arange(30, dtype=np.int64).reshape(-1, 5) % table.shape[0]   # every id
    np.testing.assert_allclose(np.asarray(conv.model(ids)), _restored(rd.run_dir, ids),
                               rtol=0, atol=1e-6)
