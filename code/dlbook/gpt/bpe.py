"""Byte-level byte-pair encoding (BPE): train a merge table, encode text to ids, decode back.

A text is first its UTF-8 bytes, ids ``0..255``, so every string can be encoded and nothing is
ever unknown. Training repeats one step: count the adjacent pairs of ids in the sequence, replace
every occurrence (left to right) of the most frequent pair by a new id, and record the pair. The
``k``-th recorded pair (from 0) is the token ``256 + k``; ``merges`` is that list of pairs, and
the vocabulary size is ``256 + len(merges)`` (Gage's compression algorithm, used on subwords by
Sennrich et al. and on bytes by GPT-2).

Ties: of the pairs with the highest count, the one with the smallest ``(left id, right id)``
wins (minbpe keeps the tied pair that first occurs in the text). Pairs are counted with
overlaps (``aaa`` holds the pair ``aa`` twice), as in minbpe.

Unlike GPT-2, the text is not first split into words by a regular expression: merges may cross
spaces and newlines (minbpe's ``BasicTokenizer`` does the same).

Speed: written plainly, each merge recounts and rewrites the whole sequence, about 0.4 s per
merge on tiny-shakespeare's megabyte (minutes for 768 merges). Here the sequence is a doubly
linked list, the pair counts are kept up to date as merges happen (a heap finds the largest), and
the positions of each pair are indexed, so a merge costs time in proportion to the number of its
occurrences, not to the length of the text: the whole training split, no prefix, trains to 1024
tokens in seconds. ``tests/test_bpe.py`` checks the merges and encodings against a plain,
recounting implementation.

Derived in: Chapter 3, *Tokens: from characters to byte pairs*.
"""

from __future__ import annotations

import heapq
import operator
from collections import defaultdict

__all__ = ["decode", "encode", "token_bytes", "train_bpe"]

Pair = tuple[int, int]


class _Sequence:
    """A sequence of ids as a doubly linked list, with the positions of every adjacent pair.

    ``ids[i]`` is the id at position ``i`` (positions never move; a merge kills the right one of
    the two), ``nxt``/``prv`` link the live positions (-1 at the ends). ``where[pair]`` holds the
    positions where ``pair`` starts; entries may be stale (checked before use). With
    ``counting=True`` ``counts[pair]`` is the exact number of adjacent occurrences of ``pair``.
    """

    def __init__(self, ids: list[int], counting: bool) -> None:
        n = len(ids)
        self.ids = list(ids)
        self.nxt = [*range(1, n), -1] if n else []
        self.prv = list(range(-1, n - 1))
        self.where: defaultdict[Pair, set[int]] = defaultdict(set)
        self.counting = counting
        self.counts: defaultdict[Pair, int] = defaultdict(int)
        self.changed: set[Pair] = set()  # pairs whose count changed since the last look
        for i in range(n - 1):
            pair = (ids[i], ids[i + 1])
            self.where[pair].add(i)
            if counting:
                self.counts[pair] += 1

    def _add(self, pair: Pair, i: int) -> None:
        self.where[pair].add(i)
        if self.counting:
            self.counts[pair] += 1
            self.changed.add(pair)

    def _remove(self, pair: Pair) -> None:
        if self.counting:
            self.counts[pair] -= 1
            self.changed.add(pair)

    def merge(self, pair: Pair, new: int) -> int:
        """Replace each occurrence of ``pair``, left to right, by ``new``; the number replaced."""
        a, b = pair
        ids, nxt, prv = self.ids, self.nxt, self.prv
        done = 0
        for i in sorted(self.where.pop(pair, ())):
            j = nxt[i] if ids[i] != -1 else -1
            if j == -1 or ids[i] != a or ids[j] != b:
                continue  # stale: merged away, or changed by an earlier replacement
            p, n = prv[i], nxt[j]
            if p != -1:
                self._remove((ids[p], a))
                self._add((ids[p], new), p)
            if n != -1:
                self._remove((b, ids[n]))
                self._add((new, ids[n]), i)
            self._remove(pair)
            ids[i], ids[j] = new, -1
            nxt[i] = n
            if n != -1:
                prv[n] = i
            done += 1
        if self.counting:
            self.counts.pop(pair, None)
            self.changed.discard(pair)
        return done

    def tokens(self) -> list[int]:
        return [t for t in self.ids if t != -1]


def _check_merges(merges: list[Pair]) -> None:
    if not isinstance(merges, (list, tuple)):
        raise ValueError(f"merges must be a list of (int, int) pairs, got {type(merges).__name__}")
    for k, pair in enumerate(merges):
        ok = isinstance(pair, (tuple, list)) and len(pair) == 2
        if not ok or not all(isinstance(t, int) and 0 <= t < 256 + k for t in pair):
            raise ValueError(
                f"merges[{k}] must be a pair of ids in [0, {256 + k}) (tokens that exist before "
                f"merge {k}), got {pair!r}"
            )


def train_bpe(data: bytes, vocab_size: int, *, progress: bool = False) -> list[Pair]:
    """Learn ``vocab_size - 256`` merges from ``data`` (bytes, e.g. ``text.encode("utf-8")``).

    Each step merges the most frequent adjacent pair (ties: the smallest ``(left, right)``) into
    the next id, ``256, 257, ...``. Training stops early, with fewer merges, if the sequence is
    down to one token.

    Args:
        data: the training text as bytes, length ``n``.
        vocab_size: at least 256 (256 means no merges).
        progress: show a ``tqdm`` progress bar over the merges.

    Returns:
        ``merges``: a list of ``(left id, right id)``; ``merges[k]`` makes token ``256 + k``.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(
            f"data must be bytes (e.g. text.encode('utf-8')), got {type(data).__name__}"
        )
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256:
        raise ValueError(f"vocab_size must be an integer >= 256 (the bytes), got {vocab_size!r}")
    seq = _Sequence(list(data), counting=True)
    heap = [(-c, pair) for pair, c in seq.counts.items()]  # max count first, then smallest pair
    heapq.heapify(heap)
    steps = range(vocab_size - 256)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="BPE merges")
    merges: list[Pair] = []
    for k in steps:
        for pair in seq.changed:  # push the new count of every pair whose count changed
            heapq.heappush(heap, (-seq.counts[pair], pair))
        seq.changed.clear()
        # entries whose count is out of date (or zero) are stale: drop them
        while heap and (heap[0][0] == 0 or -heap[0][0] != seq.counts.get(heap[0][1], 0)):
            heapq.heappop(heap)
        if not heap:
            break  # one token left: nothing to merge
        pair = heapq.heappop(heap)[1]
        seq.merge(pair, 256 + k)
        merges.append(pair)
    return merges


def encode(text: str, merges: list[Pair]) -> list[int]:
    """``str`` -> ids: its UTF-8 bytes, then each merge in the order it was learned.

    Applying the merges in order is the same as minbpe's rule (repeatedly merge the present pair
    learned first): merge ``k`` only creates pairs that contain token ``256 + k``, and a merge
    that uses that token was learned after ``k``.

    Args:
        text: any string (every Unicode string has UTF-8 bytes, so nothing is unknown).
        merges: from :func:`train_bpe`.

    Returns:
        A list of ids in ``[0, 256 + len(merges))``.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    _check_merges(merges)
    seq = _Sequence(list(text.encode("utf-8")), counting=False)
    for k, (a, b) in enumerate(merges):
        if (a, b) in seq.where:
            seq.merge((a, b), 256 + k)
    return seq.tokens()


def token_bytes(merges: list[Pair]) -> list[bytes]:
    """The bytes each token stands for: ``vocab[i]`` for ``i < 256 + len(merges)``."""
    _check_merges(merges)
    vocab = [bytes([i]) for i in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    return vocab


def decode(ids: list[int], merges: list[Pair]) -> str:
    """Ids -> ``str``: join the tokens' bytes and decode them as UTF-8.

    A list of ids that cuts a character's bytes apart (possible only for a list not made by
    :func:`encode`, or a slice of one) decodes that character as U+FFFD.

    Args:
        ids: ids in ``[0, 256 + len(merges))``.
        merges: from :func:`train_bpe`.
    """
    vocab = token_bytes(merges)
    try:
        ids = [operator.index(t) for t in ids]  # ints, numpy or torch integers
    except TypeError as err:
        raise ValueError(f"ids must be a sequence of integers: {err}") from None
    bad = [t for t in ids if not 0 <= t < len(vocab)]
    if bad:
        raise ValueError(f"ids must be integers in [0, {len(vocab)}), got {bad[:5]!r}")
    return b"".join(vocab[t] for t in ids).decode("utf-8", errors="replace")
