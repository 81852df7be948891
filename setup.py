"""tb_varmap: a TensorBoard plugin that ports TF1 model_dirs to Keras 3, verified."""
import setuptools

setuptools.setup(
    name="tb_varmap",
    version="0.1.0",
    description="TensorBoard plugin: tag TF1 variables, export to Keras 3, verify layer by layer",
    packages=setuptools.find_namespace_packages(include=["tb_varmap", "tb_varmap.*"]),
    package_data={"tb_varmap": ["http_api.md"], "tb_varmap.static": ["*"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.0",
        "keras>=3.15,<4",
        "tensorboard>=2.21",
        "numpy",
        "werkzeug",
    ],
    extras_require={
        "test": [
            "pytest",
            "hypothesis",
            "playwright",
            "tf_keras==2.21.*",
            "tf_slim",
        ],
    },
    entry_points={
        "tensorboard_plugins": ["varmap = tb_varmap.plugin:VarMapPlugin"],
        "console_scripts": ["tb-varmap = tb_varmap.cli:main"],
    },
)
