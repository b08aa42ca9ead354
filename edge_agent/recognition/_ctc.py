"""CTC decoding in numpy: prefix beam search and per-character confidences."""

from __future__ import annotations

import numpy as np

__all__ = ["softmax", "beam_search", "char_confidences", "greedy"]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def greedy(probs: np.ndarray, charset: str, blank: int) -> str:
    out, prev = [], -1
    for k in probs.argmax(-1):
        if k != prev and k != blank:
            out.append(charset[k])
        prev = int(k)
    return "".join(out)


def beam_search(probs: np.ndarray, charset: str, blank: int, beam: int = 10, top: int = 6, prune: float = 1e-3, per_frame: int = 4):
    """CTC prefix beam search over ``probs`` (T, C) (softmax output).

    Returns up to ``top`` ``(text, probability)`` pairs, best first; the
    probability sums over all alignments of the text.
    """
    # prefix -> (p_blank, p_nonblank), kept in plain probabilities (T is small)
    beams: dict[tuple[int, ...], list[float]] = {(): [1.0, 0.0]}
    for t in range(probs.shape[0]):
        row = probs[t]
        if row[blank] > 1.0 - prune:  # confident blank frame: prefixes do not change
            p = float(row[blank])
            beams = {k: [(v[0] + v[1]) * p, 0.0] for k, v in beams.items()}
            continue
        best = np.argpartition(-row, per_frame)[:per_frame]
        cand = [int(c) for c in best if row[c] > prune]
        if blank not in cand:
            cand.append(blank)
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = pb + pnb
            for c in cand:
                p = float(row[c])
                if c == blank:
                    e = nxt.setdefault(prefix, [0.0, 0.0])
                    e[0] += total * p
                    continue
                last = prefix[-1] if prefix else None
                ext = prefix + (c,)
                e = nxt.setdefault(ext, [0.0, 0.0])
                if c == last:
                    e[1] += pb * p  # repeated char needs a blank in between
                    same = nxt.setdefault(prefix, [0.0, 0.0])
                    same[1] += pnb * p
                else:
                    e[1] += total * p
        beams = dict(sorted(nxt.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:beam])
    ranked = sorted(beams.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:top]
    return ["".join(charset[i] for i in prefix) for prefix, _ in ranked], [float(sum(v)) for _, v in ranked]


def char_confidences(probs: np.ndarray, text: str, charset: str, blank: int) -> tuple[float, ...]:
    """Per-character confidence of ``text``: the Viterbi (best single path)
    alignment of ``text`` to the frames, then for each character the highest
    probability it gets on the frames aligned to it."""
    if not text:
        return ()
    idx = {c: i for i, c in enumerate(charset)}
    labels = [idx[c] for c in text if c in idx]
    ext = [blank]
    for lab in labels:
        ext += [lab, blank]
    T, S = probs.shape[0], len(ext)
    ext_a = np.asarray(ext)
    lp = np.log(np.maximum(probs[:, ext_a], 1e-12))  # (T, S)
    skip_ok = np.zeros(S, bool)
    skip_ok[2:] = (ext_a[2:] != blank) & (ext_a[2:] != ext_a[:-2])
    dp = np.full(S, -np.inf)
    dp[0] = lp[0, 0]
    if S > 1:
        dp[1] = lp[0, 1]
    back = np.zeros((T, S), np.int32)
    idx_s = np.arange(S)
    for t in range(1, T):
        stay = dp
        step = np.concatenate(([-np.inf], dp[:-1]))
        jump = np.where(skip_ok, np.concatenate(([-np.inf, -np.inf], dp[:-2])), -np.inf)
        cand = np.stack([stay, step, jump])
        arg = cand.argmax(0)
        dp = cand[arg, idx_s] + lp[t]
        back[t] = idx_s - arg
    s = S - 1 if S == 1 or dp[S - 1] >= dp[S - 2] else S - 2
    conf = [0.0] * len(labels)
    for t in range(T - 1, -1, -1):
        if s % 2 == 1:
            k = s // 2
            conf[k] = max(conf[k], float(probs[t, ext[s]]))
        s = back[t, s]
    return tuple(round(c, 4) for c in conf)
