"""Demo TF1 model_dirs for tests and demo_logs.

`tb_varmap.demo.generate.generate(out_dir, models, variants)` writes them from a subprocess;
`tb_varmap.demo.tf1_models.MODELS` describes each (inputs, outputs, steps). Importing this
package imports no TensorFlow.
"""
