"""Shared fixtures: the repository root, an isolated data cache, the built book, `gpu` marker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))  # the book's Sphinx extensions hold code the tests reuse


def toc_entries() -> list[str]:
    """Every file of ``_toc.yml``, without suffix, in reading order (the root first)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                out.append(str(Path(e["file"]).with_suffix("")))
            walk(e.get("sections"))
            walk(e.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return out


def toc_parts() -> list[tuple[str, list[str]]]:
    """``(caption, [files of the part, in order])`` for each part of ``_toc.yml``."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = []
    for part in toc.get("parts", []):
        files: list[str] = []

        def walk(entries, files=files):
            for e in entries or []:
                if "file" in e:
                    files.append(str(Path(e["file"]).with_suffix("")))
                walk(e.get("sections"))

        walk(part.get("chapters"))
        parts.append((part.get("caption", ""), files))
    return parts


@pytest.fixture(scope="session")
def book_html(tmp_path_factory) -> Path:
    """Build the whole book once per session, warnings as errors, into a temporary folder.

    This is the README's main job (``jupyter-book build .``), run where a stale execution cache
    can never hide a broken notebook; it executes every notebook.
    """
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    log = r.stdout + r.stderr
    (out / "build.log").write_text(log)
    warnings = [ln for ln in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL):", ln)]
    assert r.returncode == 0 and not warnings, (
        f"jupyter-book build failed (exit {r.returncode}); warnings and errors:\n"
        + "\n".join(warnings[:50])
        + "\n--- end of log ---\n"
        + log[-3000:]
    )
    return out / "_build" / "html"


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def data_cache(tmp_path, monkeypatch) -> Path:
    """An empty dataset cache in a temporary folder (DLBOOK_DATA points at it)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DLBOOK_DATA", str(cache))
    return cache
