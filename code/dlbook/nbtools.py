"""The book's notebooks and table of contents: finding them, and the authors' tools.

Finding them, in one place for the tests, the build, the benchmarks and the student-notebook
generator:

- :func:`notebooks` lists the notebooks under a folder, leaving out every path with a part that
  starts with ``.`` or ``_`` below that folder (``.ipynb_checkpoints``, ``.git``, ``_build``,
  ``__pycache__``: copies and build outputs, never sources); with ``toc_only=True``, the
  notebooks of ``_toc.yml`` in reading order instead.
- :func:`toc_entries` walks ``_toc.yml``: every page, in reading order; :func:`toc_parts` gives the
  same walk part by part.

The authors' tools, on the command line::

    python -m dlbook.nbtools new PATH.ipynb "Title"     a new notebook with the canonical setup cell
    python -m dlbook.nbtools strip FILES...             clear outputs and execution counts in place
    python -m dlbook.nbtools to-py NB.ipynb [OUT.py]    write a notebook as a py:percent script
    python -m dlbook.nbtools from-py SCRIPT.py [NB]     build a notebook from a py:percent script

The py:percent format: ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose
lines start with ``# ``; either may end with ``tags=["hide-input"]``. Outputs are never written.

``_toc.yml`` and ``_config.yml`` are read with PyYAML, imported only by the functions that read
them.

Derived in: Preface, *How to contribute*.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import nbformat

__all__ = [
    "book_root",
    "from_py",
    "main",
    "new_notebook",
    "notebooks",
    "repository",
    "setup_cell_source",
    "setup_head",
    "strip",
    "to_py",
    "toc_entries",
    "toc_parts",
    "write",
]

SKIPPED_PREFIXES = (".", "_")  # hidden folders and build outputs: .ipynb_checkpoints, _build

SETUP_HEAD = """\
# Setup: install dlbook if it is missing (as in Colab), then seed and pick the device.
try:
    import dlbook
except ImportError:
    %pip install -q "dlbook @ git+{url}@{branch}#subdirectory=code"
    import dlbook
"""
SETUP_TAIL = """
rt = dlbook.setup(seed=0)
device = rt.device"""

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python"}


# ----------------------------------------------------------------------------- finding them


def book_root(start: str | os.PathLike | None = None) -> Path:
    """The book's folder: the nearest folder at or above ``start`` that holds ``_toc.yml``.

    ``start`` defaults to the working directory.
    """
    here = Path.cwd() if start is None else Path(start)
    here = here.resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    raise ValueError(f"expected a book (a folder with _toc.yml) at or above {here}; found none")


def _read_yaml(path: Path) -> Any:
    import yaml

    if not path.is_file():
        raise ValueError(f"expected the book's {path.name} at {path}; it does not exist")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _walk(entries: Iterable[dict] | None) -> list[str]:
    """The ``file`` of each ``_toc.yml`` entry and of everything under it, in reading order.

    Without suffix (``chapters/03-gpt/index``); ``glob`` and ``url`` entries name no file. This
    is the one walker of the table of contents.
    """
    files: list[str] = []
    for entry in entries or []:
        if "file" in entry:
            files.append(Path(entry["file"]).with_suffix("").as_posix())
        files += _walk(entry.get("sections"))
        files += _walk(entry.get("chapters"))
    return files


def toc_parts(root: str | os.PathLike) -> list[tuple[str, list[str]]]:
    """``(caption, [pages of the part, in order])`` for each part of ``root/_toc.yml``.

    Pages are paths relative to ``root`` without suffix (``chapters/03-gpt/index``); a book
    without parts (top-level ``chapters:``) is one part with caption ``""``.
    """
    return _parts(_read_yaml(Path(root) / "_toc.yml"))


def _parts(toc: dict) -> list[tuple[str, list[str]]]:
    if "parts" in toc:
        return [(part.get("caption", ""), _walk(part.get("chapters"))) for part in toc["parts"]]
    return [("", _walk(toc.get("chapters")))]


def toc_entries(root: str | os.PathLike) -> list[str]:
    """Every page of ``root/_toc.yml`` in reading order, the root page first.

    Pages are paths relative to ``root`` without suffix, as in ``_toc.yml``
    (``["intro", "chapters/00-preface/index", ...]``); the file is ``.md`` or ``.ipynb``.
    """
    toc = _read_yaml(Path(root) / "_toc.yml")
    root_page = Path(toc["root"]).with_suffix("").as_posix()
    return [root_page] + [page for _, pages in _parts(toc) for page in pages]


def notebooks(folder: str | os.PathLike, *, toc_only: bool = False) -> list[Path]:
    """The notebooks under ``folder``, sorted by path.

    One skip rule: a notebook is left out when a part of its path below ``folder`` starts with
    ``.`` or ``_`` (``.ipynb_checkpoints``, ``.git``, ``_build``, ``__pycache__``), since those
    hold copies and build outputs, never the book's sources.

    Args:
        folder: where to look (searched recursively).
        toc_only: instead, the notebooks that ``folder/_toc.yml`` lists, in reading order (the
            ones the book build executes); ``folder`` is then the book's root.

    Returns:
        Paths under ``folder`` (absolute when ``folder`` is).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"expected a folder of notebooks, got {folder}: not a folder")
    if toc_only:
        found = [folder / f"{page}.ipynb" for page in toc_entries(folder)]
        return [p for p in found if p.is_file()]
    return sorted(
        p
        for p in folder.rglob("*.ipynb")
        if not any(part.startswith(SKIPPED_PREFIXES) for part in p.relative_to(folder).parts)
    )


# ----------------------------------------------------------------------------- the setup cell


def repository(root: str | os.PathLike | None = None) -> tuple[str, str]:
    """``(url, branch)`` of the repository, from ``_config.yml``: the one place that names it.

    ``root`` is the book's folder; by default, the book at or above the working directory.
    """
    root = book_root() if root is None else Path(root)
    repo = _read_yaml(root / "_config.yml")["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def setup_head(root: str | os.PathLike | None = None) -> str:
    """The install block every notebook's first cell starts with."""
    url, branch = repository(root)
    return SETUP_HEAD.format(url=url, branch=branch)


def setup_cell_source(root: str | os.PathLike | None = None) -> str:
    """The canonical first cell."""
    return setup_head(root) + SETUP_TAIL


def new_notebook(title: str, root: str | os.PathLike | None = None) -> nbformat.NotebookNode:
    """A notebook with a title cell and the canonical setup cell (tagged ``hide-output``)."""
    if not title.strip():
        raise ValueError("expected a title for the new notebook, got an empty string")
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    nb.metadata.language_info = LANGUAGE_INFO
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {title}\n\nWhat this notebook shows, in two sentences."),
        nbformat.v4.new_code_cell(setup_cell_source(root), metadata={"tags": ["hide-output"]}),
    ]
    return nb


# ----------------------------------------------------------------------------- files


def strip(nb: nbformat.NotebookNode) -> bool:
    """Clear outputs, execution counts and volatile metadata; return whether anything changed."""
    before = json.dumps(nb, sort_keys=True)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "collapsed", "scrolled", "ExecuteTime"):
            cell.metadata.pop(key, None)
    nb.metadata.pop("widgets", None)
    return json.dumps(nb, sort_keys=True) != before


def write(nb: nbformat.NotebookNode, path: str | os.PathLike) -> None:
    """Validate ``nb`` and write it as the repository stores notebooks (indent 1, sorted keys)."""
    nbformat.validate(nb)
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


_HEADER = re.compile(r"^# %%(?: \[(markdown|md)\])?(?:\s+tags=(\[.*\]))?\s*$")


def from_py(text: str) -> nbformat.NotebookNode:
    """A notebook from a py:percent script (see the module's docstring for the format)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    nb.metadata.language_info = LANGUAGE_INFO
    cells: list[tuple[str, list[str], list[str]]] = []
    for line in text.split("\n"):
        m = _HEADER.match(line)
        if m:
            kind = "markdown" if m.group(1) else "code"
            tags = json.loads(m.group(2)) if m.group(2) else []
            cells.append((kind, tags, []))
        elif cells:
            cells[-1][2].append(line)
    for kind, tags, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        meta = {"tags": tags} if tags else {}
        if kind == "markdown":
            src = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines)
            nb.cells.append(nbformat.v4.new_markdown_cell(src, metadata=meta))
        else:
            nb.cells.append(nbformat.v4.new_code_cell("\n".join(lines), metadata=meta))
    return nb


def to_py(nb: nbformat.NotebookNode) -> str:
    """A notebook as a py:percent script; outputs are dropped."""
    parts = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        suffix = f" tags={json.dumps(tags)}" if tags else ""
        if cell.cell_type == "markdown":
            body = "\n".join(("# " + ln) if ln else "#" for ln in cell.source.split("\n"))
            parts.append(f"# %% [markdown]{suffix}\n{body}")
        else:
            parts.append(f"# %%{suffix}\n{cell.source}")
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dlbook.nbtools {new,strip,to-py,from-py} ...``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "new":
        path, title = Path(args[0]), " ".join(args[1:]) or "Untitled"
        if path.exists():
            print(f"{path} exists", file=sys.stderr)
            return 1
        try:  # the book the notebook goes into, else the one we are in
            root = book_root(path.parent)
        except ValueError:
            try:
                root = book_root()
            except ValueError as err:
                print(err, file=sys.stderr)
                return 1
        path.parent.mkdir(parents=True, exist_ok=True)
        write(new_notebook(title, root), path)
        print(f"wrote {path}; add it to _toc.yml")
    elif cmd == "strip":
        for p in map(Path, args):
            nb = nbformat.read(p, as_version=4)
            if strip(nb):
                write(nb, p)
                print(f"stripped {p}")
    elif cmd == "to-py":
        nb = nbformat.read(args[0], as_version=4)
        out = Path(args[1]) if len(args) > 1 else Path(args[0]).with_suffix(".py")
        out.write_text(to_py(nb))
        print(f"wrote {out}")
    elif cmd == "from-py":
        src = Path(args[0])
        out = Path(args[1]) if len(args) > 1 else src.with_suffix(".ipynb")
        nb = from_py(src.read_text())
        if out.exists():  # keep cell ids stable where cells are unchanged
            old = nbformat.read(out, as_version=4)
            for new_cell, old_cell in zip(nb.cells, old.cells):
                if new_cell.source == old_cell.source and "id" in old_cell:
                    new_cell.id = old_cell.id
        write(nb, out)
        print(f"wrote {out}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
