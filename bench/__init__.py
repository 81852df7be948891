"""tb_varmap benchmarks: `python -m bench.run_all [--smoke]`; see bench/README.md."""
