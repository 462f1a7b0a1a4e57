"""Shared fixtures: the repository root, an isolated data cache, and the `gpu` marker."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
