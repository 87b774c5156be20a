"""The documentation names only files and modules that exist, so a move or a deletion cannot leave it stale."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO

DOCUMENTS = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]
MAKEFILES = ["Makefile", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "mk").glob("*.mk"))]
# A repository path: camexp/x.py, docs/x.md, experiments/x.yaml, benchmarks/x.py (or .sh), tests/x.py.
PATH = re.compile(r"(?<![\w./-])((?:camexp|docs|experiments|benchmarks|tests)/[\w./-]*\w\.(?:py|md|yaml|sh|sbatch))\b")
PLACEHOLDER_STEMS = {"x", "name", "NAME", "name_cpu"}  # `experiments/NAME.yaml`: "your file here"
MODULE = re.compile(r"(?<![\w./-])camexp((?:\.\w+)+)")


def named_paths(documents: list[str]) -> list[tuple[str, str]]:
    found = []
    for document in documents:
        for path in PATH.findall((REPO / document).read_text()):
            if Path(path).stem not in PLACEHOLDER_STEMS:
                found.append((document, path))
    return found


def test_the_path_pattern_finds_what_the_documents_name():
    """The check below must see paths at all (a pattern that matches nothing would pass vacuously)."""
    paths = {path for _, path in named_paths(DOCUMENTS)}
    assert {"experiments/synthloc_gap.yaml", "docs/evaluation.md", "camexp/wsol/protocol.py"} <= paths
    assert {"benchmarks/bench_wsoleval.py"} <= {path for _, path in named_paths(MAKEFILES)}
    assert not PATH.findall("see mycamexp/x.py or camexp/ alone")


def test_every_file_the_readme_docs_and_makefiles_name_exists():
    missing = [f"{document}: {path}" for document, path in named_paths(DOCUMENTS + MAKEFILES)
               if not (REPO / path).exists()]  # fmt: skip
    assert not missing, "named but not in the repository (moved or deleted?):\n" + "\n".join(missing)


def _resolves(dotted: str) -> bool:
    """camexp.a.b.c: the longest prefix that is a module or package file, then (at most) one name defined or
    imported in it. Read from the source, nothing imported."""
    parts = dotted.split(".")
    for cut in range(len(parts), -1, -1):  # cut 0: a name of the package itself (camexp.explain)
        base = REPO.joinpath("camexp", *parts[:cut])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if source.is_file():
            rest = parts[cut:]
            return not rest or (len(rest) <= 2 and re.search(rf"\b{rest[0]}\b", source.read_text()) is not None)
    return False


def test_every_camexp_module_the_readme_and_docs_name_exists():
    named = {(document, m) for document in DOCUMENTS for m in MODULE.findall((REPO / document).read_text())}
    assert any(m == ".explain" for _, m in named)  # the notebook API, named in the README
    missing = sorted(f"{document}: camexp{m}" for document, m in named if not _resolves(m.lstrip(".")))
    assert not missing, "named but not in the package (moved or renamed?):\n" + "\n".join(missing)
