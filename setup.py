from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "skmeta" / "_version.py").read_text(), version)

setup(
    name="skmeta",
    version=version["__version__"],
    description="Meta-learning (few-shot learning) as scikit-learn estimators",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    packages=find_packages(include=["skmeta", "skmeta.*"]),
    # The shipped weights of InContextClassifier.
    package_data={"skmeta.tabular": ["_weights/*.pt"]},
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.22",
        "scikit-learn>=1.6",
        "torch>=2.1",
        "skorch>=1.0",
        "pillow>=9.0",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "ruff>=0.5", "dask[distributed]>=2023.1"],
        "plot": ["matplotlib>=3.5"],
        "docs": [
            "sphinx>=7.2", "pydata-sphinx-theme>=0.15", "numpydoc>=1.7", "sphinx-gallery>=0.17",
            "sphinx-design>=0.5", "myst-parser>=3", "matplotlib>=3.5",
        ],
    },
    entry_points={"console_scripts": ["skmeta=skmeta.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
