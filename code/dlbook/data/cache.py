"""The dataset cache: a registry of pinned files, verified downloads, seeding from a folder.

Every file the book downloads is listed in :data:`REGISTRY` with its URL(s), size and sha256. A
download goes to a temporary file beside the cache entry and is moved into place only after its
size and checksum match, so an interrupted or corrupted download never poisons the cache; a cached
file that no longer matches is detected on use and fetched again. With no network, the error names
the file, the URLs and where to put the file by hand.

The cache lives in ``$DLBOOK_DATA`` if set, else ``$XDG_CACHE_HOME/dlbook`` (``~/.cache/dlbook``).
On a machine without a network, seed it from a folder of verified copies::

    python -m dlbook.data seed ../shared/data

The loaders that read these files are in :mod:`dlbook.data.loaders`.

Derived in: Preface, *How to run the notebooks* (data and the cache).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DATA_ENV",
    "REGISTRY",
    "ChecksumMismatchError",
    "DataError",
    "Dataset",
    "DownloadError",
    "cache_dir",
    "cached_path",
    "fetch",
    "main",
    "seed_cache",
    "sha256_of",
]

DATA_ENV = "DLBOOK_DATA"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Dataset:
    """One pinned file: where it comes from and what it must hash to.

    ``urls`` are tried in order (mirrors); the file is stored as ``<cache>/<name>/<filename>``.
    """

    name: str
    filename: str
    urls: tuple[str, ...]
    sha256: str
    size: int
    description: str = ""


_MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)


def _mnist(name: str, filename: str, sha256: str, size: int, what: str) -> Dataset:
    return Dataset(
        name=name,
        filename=filename,
        urls=tuple(m + filename for m in _MNIST_MIRRORS),
        sha256=sha256,
        size=size,
        description=f"MNIST {what} (LeCun et al. 1998), IDX format, gzip",
    )


REGISTRY: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            name="tinyshakespeare",
            filename="input.txt",
            urls=(
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                "tinyshakespeare/input.txt",
            ),
            sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            size=1_115_394,
            description="tiny-shakespeare: 40,000 lines of Shakespeare (Karpathy's char-rnn)",
        ),
        _mnist(
            "mnist-train-images",
            "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            9_912_422,
            "training images",
        ),
        _mnist(
            "mnist-train-labels",
            "train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            28_881,
            "training labels",
        ),
        _mnist(
            "mnist-test-images",
            "t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            1_648_877,
            "test images",
        ),
        _mnist(
            "mnist-test-labels",
            "t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            4_542,
            "test labels",
        ),
    )
}


class DataError(RuntimeError):
    """A dataset could not be provided."""


class DownloadError(DataError):
    """No URL of a dataset delivered it: no network, every mirror down, or transfers interrupted."""


class ChecksumMismatchError(DataError):
    """A downloaded file did not match its pinned size or sha256; it was discarded."""


# ----------------------------------------------------------------------------- the cache


def cache_dir() -> Path:
    """The cache: ``$DLBOOK_DATA``, else ``$XDG_CACHE_HOME/dlbook``, else ``~/.cache/dlbook``."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "dlbook"


def _entry(name_or_entry: str | Dataset) -> Dataset:
    if isinstance(name_or_entry, Dataset):
        return name_or_entry
    try:
        return REGISTRY[name_or_entry]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name_or_entry!r}; expected one of {sorted(REGISTRY)}"
        ) from None


def cached_path(name: str | Dataset) -> Path:
    """Where the file of dataset ``name`` lives in the cache (it may not be there yet)."""
    entry = _entry(name)
    return cache_dir() / entry.name / entry.filename


def sha256_of(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _matches(path: Path, entry: Dataset) -> bool:
    return path.is_file() and path.stat().st_size == entry.size and sha256_of(path) == entry.sha256


def _install(tmp: Path, target: Path) -> None:
    """Move a verified temporary file into place atomically (same folder, so same filesystem)."""
    os.replace(tmp, target)


def _download_to_temp(url: str, folder: Path, timeout: float) -> tuple[Path, int, str]:
    """Stream ``url`` into a temporary file in ``folder``; return (path, bytes, sha256).

    The temporary file is removed if anything goes wrong, including an interrupted transfer.
    """
    fd, name = tempfile.mkstemp(dir=folder, prefix=".download-", suffix=".part")
    tmp = Path(name)
    h = hashlib.sha256()
    n = 0
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            promised = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                h.update(chunk)
                n += len(chunk)
        if promised is not None and n != int(promised):
            raise OSError(f"transfer interrupted after {n:,} of {int(promised):,} bytes")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, n, h.hexdigest()


def _by_hand(entry: Dataset, target: Path) -> str:
    return (
        f"To provide it by hand, download {entry.urls[0]} on a machine with a network, check "
        f"that its sha256 is {entry.sha256}, and copy it to {target} (or run "
        f"'python -m dlbook.data seed FOLDER' on a folder that holds it). Set {DATA_ENV} to "
        "use another cache folder."
    )


def fetch(name: str | Dataset, *, timeout: float = 60.0, quiet: bool = False) -> Path:
    """Return the path of a verified copy of dataset ``name``, downloading it if needed.

    A cached copy is checked against the pinned size and sha256 first; a copy that does not
    match (truncated, corrupted) is removed and fetched again.

    Raises:
        ValueError: ``name`` is not in :data:`REGISTRY`.
        DownloadError: no URL delivered the file; the message says how to provide the file by hand.
        ChecksumMismatchError: every download that arrived had the wrong size or checksum.
    """
    entry = _entry(name)
    target = cache_dir() / entry.name / entry.filename
    if target.exists():
        if _matches(target, entry):
            return target
        if not quiet:
            print(f"dlbook.data: cached {target} does not match its sha256; fetching it again")
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)

    failures: list[str] = []
    mismatches: list[str] = []
    for url in entry.urls:
        try:
            if not quiet:
                print(f"dlbook.data: downloading {entry.name} from {url}")
            tmp, n, digest = _download_to_temp(url, target.parent, timeout)
        except Exception as err:
            # URLError (no network, HTTP errors), OSError (timeouts, interrupted transfers),
            # http.client.HTTPException (broken responses), ValueError (malformed URLs).
            failures.append(f"{url}: {type(err).__name__}: {err}")
            continue
        if n != entry.size or digest != entry.sha256:
            tmp.unlink(missing_ok=True)
            mismatches.append(
                f"{url}: got {n:,} bytes with sha256 {digest}, expected {entry.size:,} bytes "
                f"with sha256 {entry.sha256}"
            )
            continue
        _install(tmp, target)
        return target

    if mismatches:
        raise ChecksumMismatchError(
            f"dataset {entry.name!r} ({entry.filename}): the download did not match its pinned "
            "checksum and was discarded; nothing was written to the cache.\n  "
            + "\n  ".join(mismatches + failures)
            + "\n"
            + _by_hand(entry, target)
        )
    raise DownloadError(
        f"dataset {entry.name!r}: could not download {entry.filename} (no network, or every "
        "mirror failed or was interrupted).\n  "
        + "\n  ".join(failures)
        + "\n"
        + _by_hand(entry, target)
    )


def seed_cache(folder: str | os.PathLike, *, quiet: bool = False) -> list[str]:
    """Copy verified files from ``folder`` into the cache; return the names of datasets seeded.

    Files are matched to registry entries by size and sha256, not by name, so any folder of
    verified copies works. Nothing that does not match is copied.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"seed folder {folder} does not exist or is not a folder")
    by_size: dict[int, list[Path]] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            by_size.setdefault(p.stat().st_size, []).append(p)
    seeded = []
    for entry in REGISTRY.values():
        target = cache_dir() / entry.name / entry.filename
        if _matches(target, entry):
            seeded.append(entry.name)
            continue
        for candidate in by_size.get(entry.size, []):
            if sha256_of(candidate) == entry.sha256:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(dir=target.parent, prefix=".seed-", suffix=".part")
                os.close(fd)
                shutil.copyfile(candidate, name)
                _install(Path(name), target)
                seeded.append(entry.name)
                if not quiet:
                    print(f"dlbook.data: seeded {entry.name} from {candidate}")
                break
    return seeded


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """The command line ``python -m dlbook.data {list,fetch,seed}``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m dlbook.data", description="The book's dataset cache."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the registry and what is cached")
    p_fetch = sub.add_parser("fetch", help="download and verify datasets")
    p_fetch.add_argument("names", nargs="*", help="dataset names (default: all)")
    p_seed = sub.add_parser("seed", help="copy verified files from a folder into the cache")
    p_seed.add_argument("folder")
    args = parser.parse_args(argv)

    if args.cmd == "list":
        print(f"cache: {cache_dir()}")
        for entry in REGISTRY.values():
            state = "cached" if _matches(cached_path(entry), entry) else "missing"
            print(f"  {entry.name:22s} {entry.size:>12,} B  {state:8s} {entry.description}")
        return 0
    if args.cmd == "fetch":
        try:
            for name in args.names or list(REGISTRY):
                print(fetch(name))
        except (DataError, ValueError) as err:
            print(err, file=sys.stderr)
            return 1
        return 0
    seeded = seed_cache(args.folder)
    print(f"dlbook.data: {len(seeded)} dataset(s) in the cache at {cache_dir()}: {seeded}")
    return 0
