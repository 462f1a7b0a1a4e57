"""Datasets: a registry of pinned files, a verified cache, and loaders.

Every file the book downloads is listed in :data:`REGISTRY` with its URL(s), size and sha256. A
download goes to a temporary file beside the cache entry and is moved into place only after its
size and checksum match, so an interrupted or corrupted download never poisons the cache; a cached
file that no longer matches is detected on use and fetched again. With no network, the error names
the file, the URLs and where to put the file by hand.

The cache lives in ``$DLBOOK_DATA`` if set, else ``$XDG_CACHE_HOME/dlbook`` (``~/.cache/dlbook``).
On a machine without a network, seed it from a folder of verified copies::

    python -m dlbook.data seed ../shared/data

Loaders: :func:`load_tinyshakespeare` (characters, vocabulary, train/val split),
:func:`load_digits` (scikit-learn's bundled 8x8 digits, no download) and :func:`load_mnist`
(the IDX files, parsed by :func:`read_idx`).

Derived in: Preface, *How to run the notebooks* (data and the cache).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
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
    "read_idx",
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


# ----------------------------------------------------------------------------- tiny-shakespeare


@dataclass
class CharCorpus:
    """A text as a sequence of character ids, with its vocabulary and a train/val split.

    Attributes:
        text: the whole text.
        chars: the sorted vocabulary; ``chars[i]`` is the character with id ``i``.
        train: ``(N_train,)`` int64 tensor, the first part of the text.
        val: ``(N_val,)`` int64 tensor, the last part of the text.
    """

    text: str
    chars: list[str]
    train: torch.Tensor
    val: torch.Tensor
    stoi: dict[str, int] = field(repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> torch.Tensor:
        """``str`` of length T -> ``(T,)`` int64 tensor of ids."""
        unknown = sorted(set(s) - self.stoi.keys())
        if unknown:
            raise ValueError(
                f"characters {unknown!r} are not in the vocabulary of {len(self.chars)}"
            )
        return torch.tensor([self.stoi[c] for c in s], dtype=torch.long)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """``(T,)`` ids (tensor or list) -> ``str`` of length T."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(
                    f"decode expects a 1-D tensor of ids, got shape {tuple(ids.shape)}"
                )
            ids = ids.tolist()
        n = len(self.chars)
        bad = [i for i in ids if not 0 <= int(i) < n]
        if bad:
            raise ValueError(f"ids {bad[:5]} are outside the vocabulary [0, {n})")
        return "".join(self.chars[int(i)] for i in ids)


def load_tinyshakespeare(val_fraction: float = 0.1) -> CharCorpus:
    """tiny-shakespeare as characters: 65 symbols; the first 90% trains, the rest validates.

    Args:
        val_fraction: share of the text, taken from its end, held out for validation.

    Returns:
        A :class:`CharCorpus`.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    text = fetch("tinyshakespeare").read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n_train = int(len(ids) * (1.0 - val_fraction))
    return CharCorpus(text=text, chars=chars, train=ids[:n_train], val=ids[n_train:])


# ----------------------------------------------------------------------------- 8x8 digits


@dataclass
class DigitsSplit:
    """A fixed train/test split of an image classification dataset.

    Attributes:
        X_train: ``(N_train, D)`` floats in [0, 1] (``D = 64`` for the 8x8 digits).
        y_train: ``(N_train,)`` int64 labels in ``0..9``.
        X_test: ``(N_test, D)``.
        y_test: ``(N_test,)``.
        image_shape: ``(H, W)``; ``X.reshape(-1, *image_shape)`` gives images.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]


def load_digits(
    test_fraction: float = 0.2, *, seed: int = 0, dtype: type | np.dtype = np.float32
) -> DigitsSplit:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), scaled to [0, 1].

    The split is stratified by class and fixed by ``seed``, so every chapter and every reader
    sees the same held-out images. No download: the data ship with scikit-learn.

    Args:
        test_fraction: share held out for testing (default 0.2, i.e. 360 images).
        seed: the split's random state.
        dtype: float dtype of the images (``np.float64`` for gradient checks).
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise ValueError(f"dtype must be a float dtype, got {np.dtype(dtype)}")
    bunch = _sk_load_digits()
    X = (bunch.data / 16.0).astype(dtype)
    y = bunch.target.astype(np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return DigitsSplit(X_tr, y_tr, X_te, y_te, image_shape=(8, 8))


# ----------------------------------------------------------------------------- MNIST (IDX)

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (plain or gzip) into a NumPy array in native byte order.

    The format (LeCun et al.): two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then each dimension as
    a big-endian uint32, then the data in row-major order, big-endian.

    Returns:
        An array of shape ``dims``; for MNIST images ``(N, 28, 28)`` uint8.

    Raises:
        ValueError: the file is not IDX, or its length does not match its header.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file: it does not start with two zero bytes")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: unknown IDX type code 0x{code:02X}; expected one of "
            + ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: header promises {ndim} dimensions but the file is too short")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dt = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: header says shape {dims} of {dt} ({expected:,} bytes of data), "
            f"but the file holds {len(raw) - header:,} bytes after its header"
        )
    arr = np.frombuffer(raw, dtype=dt, offset=header).reshape(dims)
    return arr.astype(dt.newbyteorder("="))


def load_mnist(split: str = "train", *, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MNIST from its IDX files (downloaded and verified on first use).

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        normalize: return float32 images in [0, 1] instead of uint8.

    Returns:
        ``(images, labels)``: ``(N, 28, 28)`` and ``(N,)`` int64.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images = read_idx(fetch(f"mnist-{split}-images"))
    labels = read_idx(fetch(f"mnist-{split}-labels")).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    if normalize:
        images = images.astype(np.float32) / 255.0
    return images, labels


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
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


if __name__ == "__main__":
    raise SystemExit(main())
