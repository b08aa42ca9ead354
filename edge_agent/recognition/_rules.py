"""US plate-pattern rules that re-rank OCR alternates, and the confusable
character classes shared with central's confusion-tolerant search.

``plate_rules="generic"`` only demotes texts that no US plate can have (fewer
than 2 or more than 8 characters). A state code (``"ca"``, ``"ny"``...) also
prefers the state's standard serial formats and offers confusable-character
substitutions that turn a near miss into a standard format (e.g. ``S`` -> ``5``
where the format wants a digit). Vanity plates stay possible: a text that
breaks the format is demoted, never dropped. ``"none"`` disables re-ranking.
"""

from __future__ import annotations

import re

from ..wire.schema import CONFUSABLE_GROUPS, fold_confusables

__all__ = ["CONFUSABLE_GROUPS", "canonical", "RULES", "rerank", "validate_rules"]

# The confusable classes live in the wire contract, so central's
# confusion-tolerant search (``fold_confusables``) folds exactly the same way.


def canonical(plate: str) -> str:
    """Map every confusable character to its group's first member
    (``"O"``/``"D"``/``"Q"`` -> ``"0"``, ``"I"``/``"L"`` -> ``"1"``, ``"B"`` -> ``"8"``,
    ``"S"`` -> ``"5"``, ``"Z"`` -> ``"2"``)."""
    return fold_confusables(plate.upper())


_TO_DIGIT = {"O": "0", "D": "0", "Q": "0", "I": "1", "L": "1", "B": "8", "S": "5", "Z": "2"}
_TO_LETTER = {"0": "O", "1": "I", "8": "B", "5": "S", "2": "Z"}

# Standard (non-vanity) passenger formats; L letter, N digit.
RULES: dict[str, tuple[str, ...]] = {
    "generic": (),
    "ca": ("NLLLNNN",),
    "ny": ("LLLNNNN",),
    "pa": ("LLLNNNN",),
    "tx": ("LLLNNNN", "LLNLNNN"),
    "ga": ("LLLNNNN",),
    "nc": ("LLLNNNN",),
    "oh": ("LLLNNNN",),
    "va": ("LLLNNNN",),
    "az": ("LLLNNNN",),
    "wa": ("LLLNNNN",),
    "mi": ("LLLNNNN", "NLLLNN"),
    "ak": ("LLLNNN",),
    "nj": ("LNNLLL",),
    "ma": ("NLLNNN", "NNNLLN"),
}


def validate_rules(name: str) -> str:
    key = name.lower()
    if key != "none" and key not in RULES:
        raise ValueError(f"plate_rules: unknown {name!r}; use 'none', 'generic' or one of {', '.join(sorted(RULES))}")
    return key


def _shape(text: str) -> str:
    return "".join("N" if c.isdigit() else "L" for c in text)


def _coerce(text: str, fmt: str) -> str | None:
    """Substitute confusables so ``text`` fits ``fmt``; None if impossible."""
    if len(text) != len(fmt):
        return None
    out = []
    for c, f in zip(text, fmt):
        if f == "N" and not c.isdigit():
            c = _TO_DIGIT.get(c)
        elif f == "L" and c.isdigit():
            c = _TO_LETTER.get(c)
        if c is None:
            return None
        out.append(c)
    return "".join(out)


def rerank(cands: list[tuple[str, float]], rules: str) -> list[tuple[str, float]]:
    """Order ``(text, prob)`` candidates by the rules, best first. Each keeps its
    own probability (a text made by substituting confusables gets the one it was
    made from): the rules choose the order, never the confidence, so they cannot
    push a read under ``min_confidence``."""
    if rules == "none":
        return cands
    fmts = RULES.get(rules, ())
    scored: dict[str, float] = {}
    own: dict[str, float] = {}
    for text, prob in cands:
        p = prob
        if not 2 <= len(text) <= 8:
            p *= 0.2
        if fmts:
            if _shape(text) in fmts:
                p *= 1.0
            else:
                for f in fmts:
                    alt = _coerce(text, f)
                    if alt is not None and alt != text:
                        scored[alt] = max(scored.get(alt, 0.0), p * 0.9)
                        own[alt] = max(own.get(alt, 0.0), prob)
                p *= 0.35
        scored[text] = max(scored.get(text, 0.0), p)
        own[text] = max(own.get(text, 0.0), prob)
    return [(t, own[t]) for t, _ in sorted(scored.items(), key=lambda kv: -kv[1])]


_VALID = re.compile(r"^[0-9A-Z]*\Z")

