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

    Written for speed in plain Python (T is 32, most frames are confidently
    one class): candidate characters are picked for all frames in one numpy
    pass, frames that are almost surely blank only merge the beams, and a
    prefix far less likely than the best (``< prune**2`` of it) is dropped, as
    it could never become an alternate worth showing.
    """
    T = probs.shape[0]
    k = min(per_frame, probs.shape[1])
    top_idx = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    top_p = np.take_along_axis(probs, top_idx, 1)
    blank_p = probs[:, blank].tolist()
    frames = [
        [(int(c), float(p)) for c, p in zip(ci, pi) if p > prune and c != blank]
        for ci, pi in zip(top_idx.tolist(), top_p.tolist())
    ]
    floor = prune * prune
    # prefix -> [p_blank, p_nonblank], plain probabilities (T is small)
    beams: dict[tuple[int, ...], list[float]] = {(): [1.0, 0.0]}
    for t in range(T):
        pb_t = blank_p[t]
        if pb_t > 1.0 - prune:  # confident blank frame: prefixes do not change
            beams = {key: [(v[0] + v[1]) * pb_t, 0.0] for key, v in beams.items()}
            continue
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = pb + pnb
            e = nxt.get(prefix)
            if e is None:
                e = nxt[prefix] = [0.0, 0.0]
            e[0] += total * pb_t
            last = prefix[-1] if prefix else -1
            for c, p in frames[t]:
                ext = prefix + (c,)
                f = nxt.get(ext)
                if f is None:
                    f = nxt[ext] = [0.0, 0.0]
                if c == last:
                    f[1] += pb * p  # repeated char needs a blank in between
                    e[1] += pnb * p
                else:
                    f[1] += total * p
        ranked = sorted(nxt.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:beam]
        cut = (ranked[0][1][0] + ranked[0][1][1]) * floor
        beams = {key: v for key, v in ranked if v[0] + v[1] >= cut}
    ranked = sorted(beams.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:top]
    return ["".join(charset[i] for i in prefix) for prefix, _ in ranked], [float(sum(v)) for _, v in ranked]


def char_confidences(probs: np.ndarray, text: str, charset: str, blank: int) -> tuple[float, ...]:
    """Per-character confidence of ``text``: the Viterbi (best single path)
    alignment of ``text`` to the frames, then for each character the highest
    probability it gets on the frames aligned to it."""
    if not text:
        return ()
    fast = _greedy_char_confidences(probs, text, charset, blank)
    if fast is not None:
        return fast
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


def _greedy_char_confidences(probs: np.ndarray, text: str, charset: str, blank: int):
    """When the best single path spells ``text`` (the usual case), it is the
    Viterbi alignment: each character's confidence is its highest probability
    over its run of frames. ``None`` when the best path spells something else."""
    best = probs.argmax(-1)
    keep = best != blank
    keep[1:] &= best[1:] != best[:-1]
    starts = np.flatnonzero(keep)
    if "".join(charset[i] for i in best[starts]) != text:
        return None
    conf = []
    for s0 in starts.tolist():
        c = best[s0]
        e = s0 + 1
        while e < len(best) and best[e] == c:
            e += 1
        conf.append(round(float(probs[s0:e, c].max()), 4))
    return tuple(conf)
