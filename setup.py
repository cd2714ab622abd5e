"""Packaging for cello1: every field comes from settings.ini (nbdev 2 convention)."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).parent / "settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]


def reqs(key):
    "Space-separated requirement list under `key` in settings.ini."
    return cfg.get(key, "").split()


extras = {name: reqs(f"{name}_requirements") for name in ("train", "api", "serve", "census", "cluster", "lab", "dev")}
extras["all"] = sorted({r for k, v in extras.items() if k != "dev" for r in v})

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author=cfg["author"],
    license="Apache-2.0",
    url=cfg["git_url"],
    keywords=cfg["keywords"].split(),
    packages=setuptools.find_packages(include=["cello1", "cello1.*"]),
    include_package_data=True,
    package_data={"cello1": ["*.json"]},
    # the paper notebooks and numbers, so that `cello1 reproduce` runs from an installed wheel
    # (cello1.reproduce.paper_home finds them under <prefix>/share/cello1/paper)
    data_files=[("share/cello1/paper", [f"paper/{p.name}" for p in sorted((Path(__file__).parent / "paper").glob("*.ipynb"))]
                 + ["paper/reported.csv"])],
    python_requires=f">={cfg['min_python']}",
    install_requires=reqs("requirements"),
    extras_require=extras,
    entry_points={"console_scripts": cfg["console_scripts"].split(), "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
    ],
    project_urls={"Source": cfg["git_url"]},
    zip_safe=False,
)
