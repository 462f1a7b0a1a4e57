"""dlbook.data: the registry, the verified cache, its failure modes, and the loaders."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from dlbook import data
from dlbook.data import ChecksumMismatchError, Dataset, DownloadError


def _entry(tmp_path: Path, payload: bytes, *, name="toy", urls=None) -> Dataset:
    """A registry entry for `payload`, served from a file:// URL unless urls are given."""
    src = tmp_path / f"{name}-source.bin"
    src.write_bytes(payload)
    return Dataset(
        name=name,
        filename=f"{name}.bin",
        urls=tuple(urls) if urls else (src.as_uri(),),
        sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload),
    )


def _leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file() and p.name.startswith(".")]


def _closed_port_url(filename: str) -> str:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused, like a machine with no network
    return f"http://127.0.0.1:{port}/{filename}"


# ----------------------------------------------------------------------------- registry


def test_registry_entries_are_pinned():
    assert {"tinyshakespeare", "mnist-train-images", "mnist-test-labels"} <= set(data.REGISTRY)
    for entry in data.REGISTRY.values():
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        assert entry.size > 0 and entry.urls
        assert all(u.startswith("https://") for u in entry.urls)
    assert data.REGISTRY["tinyshakespeare"].sha256 == (
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    )


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DLBOOK_DATA", str(tmp_path / "c"))
    assert data.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("DLBOOK_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "dlbook"


def test_unknown_dataset_is_a_value_error(data_cache):
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        data.fetch("nope")


# ----------------------------------------------------------------------------- fetching


def test_fetch_downloads_verifies_and_reuses(data_cache, tmp_path):
    payload = b"hello, cache\n" * 1000
    entry = _entry(tmp_path, payload)
    path = data.fetch(entry, quiet=True)
    assert path == data_cache / "toy" / "toy.bin"
    assert path.read_bytes() == payload
    assert _leftovers(data_cache) == []
    # A second fetch uses the cache: make the source unreachable and fetch again.
    Path(entry.urls[0][len("file://") :]).unlink()
    assert data.fetch(entry, quiet=True).read_bytes() == payload


def test_checksum_mismatch_is_discarded_and_reported(data_cache, tmp_path):
    good = _entry(tmp_path, b"the right bytes")
    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(b"the wrong bytes")  # same size, other content
    entry = Dataset(good.name, good.filename, (tampered.as_uri(),), good.sha256, good.size)
    with pytest.raises(ChecksumMismatchError) as err:
        data.fetch(entry, quiet=True)
    msg = str(err.value)
    assert good.sha256 in msg and hashlib.sha256(b"the wrong bytes").hexdigest() in msg
    assert tampered.as_uri() in msg and "discarded" in msg
    assert not data.cached_path(entry).exists()
    assert _leftovers(data_cache) == []


def test_offline_error_names_the_file_the_url_and_where_to_put_it(data_cache, tmp_path):
    entry = _entry(tmp_path, b"x" * 10, urls=[_closed_port_url("toy.bin")])
    with pytest.raises(DownloadError) as err:
        data.fetch(entry, quiet=True)
    msg = str(err.value)
    assert "toy.bin" in msg
    assert entry.urls[0] in msg
    assert str(data_cache / "toy" / "toy.bin") in msg
    assert "by hand" in msg and entry.sha256 in msg
    assert _leftovers(data_cache) == [] and not data.cached_path(entry).exists()


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Promises the whole payload, sends half of it, and hangs up."""

    payload = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload[: len(self.payload) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def truncating_server():
    _TruncatingHandler.payload = bytes(range(256)) * 400
    server = http.server.HTTPServer(("127.0.0.1", 0), _TruncatingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/toy.bin", _TruncatingHandler.payload
    server.shutdown()
    server.server_close()


def test_interrupted_download_leaves_nothing_behind(data_cache, tmp_path, truncating_server):
    url, payload = truncating_server
    entry = _entry(tmp_path, payload, urls=[url])
    with pytest.raises(DownloadError, match="interrupted after 51,200 of 102,400 bytes"):
        data.fetch(entry, quiet=True)
    assert not data.cached_path(entry).exists()
    assert _leftovers(data_cache) == []


def test_interrupted_download_falls_back_to_the_next_mirror(
    data_cache, tmp_path, truncating_server
):
    url, payload = truncating_server
    mirror = tmp_path / "mirror.bin"
    mirror.write_bytes(payload)
    entry = _entry(tmp_path, payload, urls=[url, mirror.as_uri()])
    assert data.fetch(entry, quiet=True).read_bytes() == payload
    assert _leftovers(data_cache) == []


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_a_damaged_cached_file_is_detected_and_fetched_again(data_cache, tmp_path, damage):
    payload = b"0123456789" * 500
    entry = _entry(tmp_path, payload)
    path = data.fetch(entry, quiet=True)
    if damage == "corrupt":
        path.write_bytes(b"X" + payload[1:])
    else:
        path.write_bytes(payload[:100])
    assert data.fetch(entry, quiet=True).read_bytes() == payload


def test_seed_cache_copies_only_verified_files(data_cache, tmp_path, monkeypatch):
    payload = b"verified copy\n" * 50
    entry = _entry(tmp_path, payload, urls=["https://example.invalid/toy.bin"])
    monkeypatch.setitem(data.REGISTRY, "toy", entry)
    folder = tmp_path / "usb"
    folder.mkdir()
    (folder / "any-name.txt").write_bytes(payload)
    (folder / "impostor.txt").write_bytes(b"X" * len(payload))  # right size, wrong bytes
    assert "toy" in data.seed_cache(folder, quiet=True)
    assert data.cached_path("toy").read_bytes() == payload
    with pytest.raises(ValueError, match="does not exist"):
        data.seed_cache(tmp_path / "missing")


def test_command_line_seed_and_list(data_cache, tmp_path, monkeypatch, capsys):
    payload = b"seed me\n" * 10
    entry = _entry(tmp_path, payload, urls=["https://example.invalid/toy.bin"])
    monkeypatch.setitem(data.REGISTRY, "toy", entry)
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "f").write_bytes(payload)
    assert data.main(["seed", str(tmp_path / "seed")]) == 0
    assert data.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "cached" in out


def test_list_and_seed_tell_a_verified_copy_from_a_damaged_one(
    data_cache, tmp_path, monkeypatch, capsys
):
    payload = b"the pinned bytes\n" * 20
    entry = _entry(tmp_path, payload, urls=["https://example.invalid/toy.bin"])
    monkeypatch.setitem(data.REGISTRY, "toy", entry)
    target = data.cached_path("toy")
    target.parent.mkdir(parents=True)
    empty = tmp_path / "empty"
    empty.mkdir()

    def listed_state() -> str:
        assert data.main(["list"]) == 0
        rows = [ln.split() for ln in capsys.readouterr().out.splitlines()]
        return next(row[3] for row in rows if row[:1] == ["toy"])  # name, size, "B", state

    target.write_bytes(b"X" + payload[1:])  # the right size, the wrong sha256
    assert listed_state() == "missing"
    assert data.seed_cache(empty, quiet=True) == []  # a damaged copy is not a seeded dataset
    target.write_bytes(payload)
    assert listed_state() == "cached"
    assert data.seed_cache(empty, quiet=True) == ["toy"]  # a verified copy is kept and counted


# ----------------------------------------------------------------------------- IDX


def _write_idx(path: Path, arr: np.ndarray, code: int, *, compress: bool = False) -> None:
    """Write an IDX file by the format's definition (written here, not by dlbook)."""
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    body = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + body)


@pytest.mark.parametrize(
    ("dtype", "code", "shape"),
    [
        (np.uint8, 0x08, (5, 28, 28)),
        (np.int8, 0x09, (7,)),
        (np.int16, 0x0B, (3, 4)),
        (np.int32, 0x0C, (2, 3, 4)),
        (np.float32, 0x0D, (6,)),
        (np.float64, 0x0E, (2, 2)),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, dtype, code, shape, compress):
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        arr = rng.normal(size=shape).astype(dtype)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    _write_idx(path, arr, code, compress=compress)
    back = data.read_idx(path)
    assert back.shape == shape and back.dtype == np.dtype(dtype)
    assert np.array_equal(back, arr)


def test_idx_errors_are_clear(tmp_path):
    bad_magic = tmp_path / "bad_magic"
    bad_magic.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="two zero bytes"):
        data.read_idx(bad_magic)
    bad_code = tmp_path / "bad_code"
    bad_code.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="unknown IDX type code 0x07"):
        data.read_idx(bad_code)
    truncated = tmp_path / "truncated"
    _write_idx(truncated, np.zeros((4, 4), np.uint8), 0x08)
    truncated.write_bytes(truncated.read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"header says shape \(4, 4\)"):
        data.read_idx(truncated)


def test_load_mnist_parses_registry_files(data_cache, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(12, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, size=12).astype(np.uint8)
    for kind, arr in (("images", images), ("labels", labels)):
        p = tmp_path / f"test-{kind}.gz"
        _write_idx(p, arr, 0x08, compress=True)
        raw = p.read_bytes()
        entry = Dataset(
            f"mnist-test-{kind}", p.name, (p.as_uri(),), hashlib.sha256(raw).hexdigest(), len(raw)
        )
        monkeypatch.setitem(data.REGISTRY, entry.name, entry)
    X, y = data.load_mnist("test")
    assert X.shape == (12, 28, 28) and X.dtype == np.float32 and y.dtype == np.int64
    assert np.allclose(X * 255, images) and np.array_equal(y, labels)
    Xu, _ = data.load_mnist("test", normalize=False)
    assert Xu.dtype == np.uint8
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.load_mnist("validation")


# ----------------------------------------------------------------------------- loaders


def test_char_corpus_from_a_small_text(data_cache, tmp_path, monkeypatch):
    text = "to be, or not to be: that is the question.\n" * 20
    entry = _entry(tmp_path, text.encode(), name="tinyshakespeare")
    monkeypatch.setitem(data.REGISTRY, "tinyshakespeare", entry)
    corpus = data.load_tinyshakespeare(val_fraction=0.25)
    assert corpus.chars == sorted(set(text)) and corpus.vocab_size == len(set(text))
    assert len(corpus.train) + len(corpus.val) == len(text)
    assert len(corpus.val) == len(text) - int(len(text) * 0.75)
    assert corpus.decode(torch.cat([corpus.train, corpus.val])) == text
    assert corpus.decode(corpus.encode("not to be")) == "not to be"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        corpus.encode("Zebra")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        corpus.decode([0, 999])
    with pytest.raises(ValueError, match="val_fraction"):
        data.load_tinyshakespeare(val_fraction=1.5)


def test_tinyshakespeare_itself():
    path = data.cached_path("tinyshakespeare")
    if not path.is_file() or data.sha256_of(path) != data.REGISTRY["tinyshakespeare"].sha256:
        pytest.skip(
            "tiny-shakespeare is not in the cache (or not the pinned file) and there may be no "
            "network; "
            "seed it with: python -m dlbook.data seed ../shared/data"
        )
    corpus = data.load_tinyshakespeare()
    assert corpus.vocab_size == 65
    assert len(corpus.text) == 1_115_394
    assert len(corpus.train) == 1_003_854 and len(corpus.val) == 111_540  # nanoGPT's split
    assert corpus.text.startswith("First Citizen:")


def test_digits_split_is_fixed_stratified_and_scaled():
    a, b = data.load_digits(), data.load_digits()
    assert a.X_train.shape == (1437, 64) and a.X_test.shape == (360, 64)
    assert a.X_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert np.array_equal(a.X_test, b.X_test) and np.array_equal(a.y_test, b.y_test)
    assert a.X_train.min() == 0.0 and a.X_train.max() == 1.0
    share = np.bincount(a.y_test, minlength=10) / len(a.y_test)
    assert np.all(np.abs(share - 0.1) < 0.02)
    assert data.load_digits(dtype=np.float64).X_train.dtype == np.float64
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_digits(test_fraction=0)
    with pytest.raises(ValueError, match="float dtype"):
        data.load_digits(dtype=np.int32)
