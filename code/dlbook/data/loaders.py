"""Loaders for the book's datasets: tiny-shakespeare, the 8x8 digits, MNIST.

:func:`load_tinyshakespeare` gives characters, vocabulary and a train/val split;
:func:`load_digits` scikit-learn's bundled 8x8 digits (no download); :func:`load_mnist` the IDX
files, parsed by :func:`read_idx`. Files come from the verified cache of :mod:`dlbook.data.cache`.

Derived in: Preface, *How to run the notebooks* (data and the cache).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dlbook.data.cache import DataError, fetch

__all__ = [
    "CharCorpus",
    "DigitsSplit",
    "load_digits",
    "load_mnist",
    "load_tinyshakespeare",
    "read_idx",
]


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
