"""Byte-pair encoding (dlbook.gpt.bpe) against Gage's worked example and a plain reference."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from dlbook import gpt
from dlbook.gpt.bpe import decode, encode, token_bytes, train_bpe

# ----------------------------------------------------------------------------- a plain reference


def naive_merge(ids: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``ids``, scanning left to right, by ``new``."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def naive_train(data: bytes, vocab_size: int) -> list[tuple[int, int]]:
    """The merge loop as written in a textbook: recount every pair, merge the most frequent."""
    ids, merges = list(data), []
    for new in range(256, vocab_size):
        counts = Counter(itertools.pairwise(ids))
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))  # most frequent, then smallest pair
        ids = naive_merge(ids, pair, new)
        merges.append(pair)
    return merges


def naive_encode(text: str, merges: list[tuple[int, int]]) -> list[int]:
    """minbpe's encoder: while some present pair was learned, merge the one learned first."""
    rank = {pair: k for k, pair in enumerate(merges)}
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        pair = min(itertools.pairwise(ids), key=lambda p: rank.get(p, float("inf")))
        if pair not in rank:
            break
        ids = naive_merge(ids, pair, 256 + rank[pair])
    return ids


def random_text(rng: random.Random, n: int, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


ALPHABETS = ["ab", "abc ", "aaaab", "the cat sat\n", "héllo wörld ✓ 日本語 🎭"]


# ----------------------------------------------------------------------------- tests


def test_gage_example():
    """Wikipedia's example of Gage's algorithm: aaabdaaabac -> ZabdZabac -> ZYdZYac -> XdXac."""
    merges = train_bpe(b"aaabdaaabac", 259)
    a, b = ord("a"), ord("b")
    assert merges == [(a, a), (a, b), (256, 257)]  # Z = aa, Y = ab, X = ZY
    assert encode("aaabdaaabac", merges) == [258, ord("d"), 258, a, ord("c")]  # XdXac
    assert token_bytes(merges)[256:] == [b"aa", b"ab", b"aaab"]


def test_overlapping_pairs():
    """``aaaa`` holds the pair ``aa`` three times (overlaps counted) and merges to two tokens."""
    merges = train_bpe(b"aaaa", 258)
    assert merges == [(97, 97), (256, 256)]
    assert encode("aaaa", merges[:1]) == [256, 256]
    assert encode("aaaaa", merges[:1]) == [256, 256, 97]  # left to right
    assert encode("aaaa", merges) == [257]


@pytest.mark.parametrize("alphabet", ALPHABETS)
def test_agrees_with_naive_reference(alphabet):
    rng = random.Random(len(alphabet))
    for n in (0, 1, 2, 7, 60, 300):
        text = random_text(rng, n, alphabet)
        data = text.encode("utf-8")
        merges = train_bpe(data, 256 + 40)
        assert merges == naive_train(data, 256 + 40), text
        other = random_text(rng, 80, alphabet)
        for t in (text, other):
            assert encode(t, merges) == naive_encode(t, merges)


def test_stops_when_one_token_is_left():
    merges = train_bpe(b"abcd", 300)
    assert len(merges) == 3  # abcd -> 3 merges -> one token
    assert encode("abcd", merges) == [258]
    assert train_bpe(b"", 300) == [] and train_bpe(b"x", 300) == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a",
        "hello world",
        "naïve café — 日本語のテキスト, emoji 🎭🤖, Ελληνικά, \x00\n\t",
        "a" * 100,
    ],
)
def test_round_trip_unicode(text):
    merges = train_bpe("the cat sat on the mat, naïve café".encode(), 300)
    ids = encode(text, merges)
    assert decode(ids, merges) == text
    assert all(0 <= t < 256 + len(merges) for t in ids)
    assert len(ids) <= len(text.encode("utf-8"))


def test_random_unicode_round_trip():
    rng = random.Random(0)
    merges = train_bpe(random_text(rng, 500, ALPHABETS[-1]).encode(), 320)
    for _ in range(20):
        s = "".join(chr(rng.randrange(1, 0x2FFFF)) for _ in range(rng.randrange(0, 30)))
        s = s.encode("utf-8", errors="ignore").decode("utf-8")  # drop lone surrogates
        assert decode(encode(s, merges), merges) == s


def test_token_bytes_concatenate():
    merges = train_bpe(b"to be or not to be, that is the question", 280)
    vocab = token_bytes(merges)
    assert len(vocab) == 280
    text = "not to be"
    assert b"".join(vocab[t] for t in encode(text, merges)) == text.encode()


def test_exported():
    assert gpt.train_bpe is train_bpe and gpt.encode_bpe is encode and gpt.decode_bpe is decode


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: train_bpe("text", 300), "data must be bytes"),
        (lambda: train_bpe(b"text", 255), "vocab_size must be an integer >= 256"),
        (lambda: train_bpe(b"text", 300.0), "vocab_size must be an integer >= 256"),
        (lambda: encode(b"text", []), "text must be a str"),
        (lambda: encode("text", [(97, 256)]), r"merges\[0\] must be a pair of ids in \[0, 256\)"),
        (lambda: encode("text", [(97,)]), r"merges\[0\]"),
        (lambda: encode("text", "ab"), "merges must be a list"),
        (lambda: decode([300], [(97, 98)]), r"ids must be integers in \[0, 257\)"),
        (lambda: decode([-1], []), r"ids must be integers in \[0, 256\)"),
        (lambda: decode(["a"], []), "ids must be a sequence of integers"),
    ],
)
def test_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()
