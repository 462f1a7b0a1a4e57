"""One import idiom across the notebooks.

The setup cell does ``import dlbook`` (which gives ``dlbook.setup`` and, loaded on first use,
``dlbook.plot.label`` and the like). Every other dlbook import is a ``from`` import: a module
(``from dlbook import gpt``, then ``gpt.GPT``) or names (``from dlbook.train import train_loop``),
never ``import dlbook.<module>`` and never an alias (``as bp``), so that a name in a notebook reads
the same as in the package and in the book's text. Torch's thread count is chosen in the setup
cell (``dlbook.setup(threads=1)``), not by a ``torch.set_num_threads`` further down.
"""

from __future__ import annotations

import ast
import json
import re

import pytest

from dlbook.nbtools import notebooks

from conftest import ROOT

NOTEBOOKS = notebooks(ROOT / "chapters")


def _code_cells(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            src = "".join(cell["source"])
            # IPython magics are not Python: blank them out before parsing
            yield i, re.sub(r"(?m)^(\s*)[%!].*$", r"\1pass", src)


def _imports(path):
    for i, src in _code_cells(path):
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield i, node


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_dlbook_imports_follow_the_idiom(path):
    bad = []
    for i, node in _imports(path):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dlbook") and alias.name != "dlbook":
                    bad.append(f"cell {i}: import {alias.name} (use: from dlbook import ...)")
                if alias.name == "dlbook" and alias.asname:
                    bad.append(f"cell {i}: import dlbook as {alias.asname}")
        elif (node.module or "").startswith("dlbook"):
            for alias in node.names:
                if alias.asname:
                    bad.append(
                        f"cell {i}: from {node.module} import {alias.name} as {alias.asname}"
                    )
    assert not bad, f"{path.name}: dlbook imports off the book's idiom:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_threads_are_chosen_in_the_setup_cell(path):
    cells = list(_code_cells(path))
    later = [i for i, src in cells[1:] if "set_num_threads" in src]
    assert not later, (
        f"{path.name}: torch.set_num_threads in cells {later}; use dlbook.setup(threads=1)"
    )


def test_the_rule_catches_what_it_forbids(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "code", "source": "import dlbook\nrt = dlbook.setup(seed=0)"},
            {
                "cell_type": "code",
                "source": "import dlbook.plot\nfrom dlbook import backprop as bp",
            },
        ]
    }
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    with pytest.raises(AssertionError, match=r"import dlbook\.plot[\s\S]*backprop as bp"):
        test_dlbook_imports_follow_the_idiom(path)
