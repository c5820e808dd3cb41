"""Packages the top-level data folders (prompts/, sandbox/, evals/) into the wheel.

They live at the top of the repository (the design card's layout) and are installed as
``kcode/_bundled/<folder>``; ``kcode.resources`` finds them in either place.
"""

from setuptools import find_packages, setup

BUNDLED = {
    "kcode._bundled.prompts": "prompts",
    "kcode._bundled.sandbox": "sandbox",
    "kcode._bundled.evals": "evals",
}

setup(
    packages=find_packages(include=["kcode", "kcode.*"]) + list(BUNDLED),
    package_dir=BUNDLED,
    # all package data is declared here: a [tool.setuptools.package-data] table in pyproject.toml
    # would replace this whole mapping, and the wheel would ship without the data folders
    package_data={"kcode.headless": ["*.json"], **{name: ["**/*"] for name in BUNDLED}},
)
