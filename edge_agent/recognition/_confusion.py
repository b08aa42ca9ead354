"""Misreads by character: which true characters are read as which.

Each ``(read, truth)`` pair is aligned by edit distance (Levenshtein, unit
costs), so a read that drops or adds a character does not shift every
character after it into a false substitution. The alignment gives, per pair:
substitutions (a true character read as another), deletions (a true
character with nothing read for it) and insertions (a read character with no
true character). When several alignments cost the same, the backtrace takes a
match or substitution first, then a deletion, then an insertion, so the table
is deterministic.

Plate text is data to count, never to log.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["align", "Confusions", "confusions"]


def align(truth: str, read: str) -> list[tuple[str | None, str | None]]:
    """The edit-distance alignment of ``truth`` against ``read``: a list of
    ``(true, read)`` pairs in order, ``(c, None)`` for a deletion and
    ``(None, c)`` for an insertion; equal pairs are matches."""
    n, m = len(truth), len(read)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j - 1] + (truth[i - 1] != read[j - 1]), d[i - 1][j] + 1, d[i][j - 1] + 1)
    out: list[tuple[str | None, str | None]] = []
    i, j = n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (truth[i - 1] != read[j - 1]):
            out.append((truth[i - 1], read[j - 1]))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            out.append((truth[i - 1], None))
            i -= 1
        else:
            out.append((None, read[j - 1]))
            j -= 1
    out.reverse()
    return out


@dataclass
class Confusions:
    """Counts over many pairs. ``substitutions[(true, read)]``,
    ``deletions[true]``, ``insertions[read]``; ``pairs`` compared,
    ``misread`` of them not equal; ``chars`` true characters seen."""

    substitutions: Counter = field(default_factory=Counter)
    deletions: Counter = field(default_factory=Counter)
    insertions: Counter = field(default_factory=Counter)
    pairs: int = 0
    misread: int = 0
    chars: int = 0

    def add(self, read: str, truth: str) -> None:
        self.pairs += 1
        self.chars += len(truth)
        if read == truth:
            return
        self.misread += 1
        for t, r in align(truth, read):
            if t is None:
                self.insertions[r] += 1
            elif r is None:
                self.deletions[t] += 1
            elif t != r:
                self.substitutions[(t, r)] += 1

    def top(self, n: int | None = None) -> list[tuple[str, str, int]]:
        """The largest substitution pairs ``(true, read, count)``, most first
        (ties in character order)."""
        rows = sorted(self.substitutions.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(t, r, c) for (t, r), c in rows[:n]]

    def as_json(self) -> dict:
        def counts(c: Counter, key: str) -> list[dict]:
            return [{key: k, "count": v} for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]

        return {"pairs": self.pairs, "misread": self.misread, "chars": self.chars,
                "substitutions": [{"true": t, "read": r, "count": c} for t, r, c in self.top()],
                "deletions": counts(self.deletions, "true"), "insertions": counts(self.insertions, "read")}


def confusions(pairs) -> Confusions:
    """:class:`Confusions` over ``(read, truth)`` pairs."""
    c = Confusions()
    for read, truth in pairs:
        c.add(read, truth)
    return c
