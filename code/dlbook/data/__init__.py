"""Datasets: a registry of pinned files, a verified cache, and loaders.

- :mod:`dlbook.data.cache`: :data:`REGISTRY` (URL(s), size and sha256 of every file the book
  downloads), :func:`fetch` (atomic, verified download), :func:`seed_cache` (copy verified files
  from a folder), :func:`cache_dir`, and the errors :class:`DataError`, :class:`DownloadError`,
  :class:`ChecksumMismatchError`.
- :mod:`dlbook.data.loaders`: :func:`load_tinyshakespeare`, :func:`load_digits`,
  :func:`load_mnist` and the IDX parser :func:`read_idx`.

Everything is importable from ``dlbook.data`` itself. On the command line::

    python -m dlbook.data list           # the registry and what is cached
    python -m dlbook.data fetch [NAMES]  # download and verify
    python -m dlbook.data seed FOLDER    # copy verified files from a folder into the cache

Derived in: Preface, *How to run the notebooks* (data and the cache).
"""

from dlbook.data.cache import (
    DATA_ENV,
    REGISTRY,
    ChecksumMismatchError,
    DataError,
    Dataset,
    DownloadError,
    cache_dir,
    cached_path,
    fetch,
    main,
    seed_cache,
    sha256_of,
)
from dlbook.data.loaders import (
    CharCorpus,
    DigitsSplit,
    load_digits,
    load_mnist,
    load_tinyshakespeare,
    read_idx,
)

__all__ = [
    "DATA_ENV",
    "REGISTRY",
    "CharCorpus",
    "ChecksumMismatchError",
    "DataError",
    "Dataset",
    "DigitsSplit",
    "DownloadError",
    "cache_dir",
    "cached_path",
    "fetch",
    "load_digits",
    "load_mnist",
    "load_tinyshakespeare",
    "main",
    "read_idx",
    "seed_cache",
    "sha256_of",
]
