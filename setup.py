"""Installs the `dsaecodec` codec, the torch-free `bitstream` package and the `dsaecodec` command."""
from setuptools import find_packages, setup

setup(
    name="dsaecodec",
    version="0.1.0",
    description="A neural video codec built on the Disentangled Sequential Autoencoder",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["dsaecodec", "dsaecodec.*", "bitstream", "bitstream.*"]),
    package_data={"dsaecodec": ["weights/*.pt", "weights/*.json", "weights/*.csv"]},
    install_requires=[
        "torch",
        "constriction>=0.4",
        "av>=12,<19",
        "numpy<2",
        "scikit-video",
        "click>=8",
        "tqdm",
        "pillow",
        "pytorch-msssim",
        "scipy",
    ],
    # compressai: tests check that dsaecodec.entropy and the GDN layers compute what CompressAI's do
    # ray: `dsaecodec encode DIR --ray ADDRESS` codes a folder on a Ray cluster (tests/test_ray.py skips its Ray test
    # without it, so that `test` stays lean)
    extras_require={"test": ["pytest", "hypothesis", "compressai"], "bench": ["matplotlib", "bjontegaard"],
                    "ray": ["ray>=2"]},
    entry_points={"console_scripts": ["dsaecodec=dsaecodec.cli:main"]},
)
