"""Tools for the book's notebooks, used by the tests and by authors.

    python tests/nbtools.py new PATH.ipynb "Title"     a new notebook with the canonical setup cell
    python tests/nbtools.py strip FILES...             clear outputs and execution counts in place
    python tests/nbtools.py to-py NB.ipynb [OUT.py]    write a notebook as a py:percent script
    python tests/nbtools.py from-py SCRIPT.py [NB]     build a notebook from a py:percent script

The py:percent format: ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose
lines start with ``# ``; either may end with ``tags=["hide-input"]``. Outputs are never written.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]

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


def repository() -> tuple[str, str]:
    """``(url, branch)`` of the repository, from ``_config.yml``: the one place that names it."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def setup_head() -> str:
    """The install block every notebook's first cell starts with."""
    url, branch = repository()
    return SETUP_HEAD.format(url=url, branch=branch)


def setup_cell_source() -> str:
    """The canonical first cell."""
    return setup_head() + SETUP_TAIL


def new_notebook(title: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    nb.metadata.language_info = LANGUAGE_INFO
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {title}\n\nWhat this notebook shows, in two sentences."),
        nbformat.v4.new_code_cell(setup_cell_source(), metadata={"tags": ["hide-output"]}),
    ]
    return nb


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


def write(nb: nbformat.NotebookNode, path: Path) -> None:
    nbformat.validate(nb)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


_HEADER = re.compile(r"^# %%(?: \[(markdown|md)\])?(?:\s+tags=(\[.*\]))?\s*$")


def from_py(text: str) -> nbformat.NotebookNode:
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


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "new":
        path, title = Path(args[0]), " ".join(args[1:]) or "Untitled"
        if path.exists():
            print(f"{path} exists", file=sys.stderr)
            return 1
        path.parent.mkdir(parents=True, exist_ok=True)
        write(new_notebook(title), path)
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
    raise SystemExit(main(sys.argv[1:]))
