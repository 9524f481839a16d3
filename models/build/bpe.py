"""Byte-level BPE in GPT-2's spelling, as llama.cpp's "gpt2" tokenizer reads it.

Learning merges is all this module does; tokenizing is left to llama.cpp itself, so that
text is split exactly as the model will see it at run time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import cache
from itertools import pairwise

# GPT-2's pre-tokenizer ("gpt-2" in llama.cpp), for ASCII text: words with their leading
# space, numbers, punctuation runs and blanks. Merges never cross these pieces.
_PIECES = re.compile(
    r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")


@cache
def byte_symbols() -> tuple[str, ...]:
    """GPT-2's reversible byte-to-unicode table, indexed by byte value."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


def word_counts(text: str | Iterable[str]) -> Counter[str]:
    """How often each pre-tokenizer piece occurs in ``text`` (a string or many)."""
    texts = [text] if isinstance(text, str) else text
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(_PIECES.findall(t))
    return counts


def learn_merges(words: Counter[str], n_merges: int) -> list[tuple[str, str]]:
    """Learns up to ``n_merges`` byte-level BPE merges from piece counts, deterministically.

    Args:
        words: Pre-tokenizer pieces and their counts (see :func:`word_counts`).
        n_merges: The most merges to learn; fewer when every piece is one symbol.

    Returns:
        The merges in priority order, each a pair of symbols in GPT-2's spelling.
    """
    symbols = byte_symbols()
    seqs = {tuple(symbols[b] for b in w.encode()): n for w, n in words.items()}
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for seq, n in seqs.items():
            for pair in pairwise(seq):
                pairs[pair] += n
        if not pairs:
            break
        # Most frequent pair; ties broken by the pair's text for determinism.
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        new_seqs: dict[tuple[str, ...], int] = {}
        for seq, n in seqs.items():
            out: list[str] = []
            i = 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            new_seqs[tuple(out)] = new_seqs.get(tuple(out), 0) + n
        seqs = new_seqs
    return merges
