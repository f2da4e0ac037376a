"""Decoding searches over a step function: greedy and beam search.

A step function maps the previous tokens of every decoder row, shape (rows,), and the decoder's
state to the log-probabilities of the next token, shape (rows, vocabulary), and the new state.
A state is an array whose second axis is the rows, or a tuple of such arrays (an LSTM's).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

Step = Callable[[np.ndarray, Any], "tuple[np.ndarray, Any]"]


def greedy(step: Step, state: Any, batch: int, max_len: int, bos: int, eos: int) -> list[list[int]]:
    """The most probable next token at each step for every sentence of the batch, to ``eos`` or ``max_len``."""
    tokens = np.full(batch, bos, dtype=np.int64)
    out: list[list[int]] = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)
    for _ in range(max_len):
        logp, state = step(tokens, state)
        tokens = np.argmax(logp, axis=1)
        for i in np.flatnonzero(~done):
            if tokens[i] == eos:
                done[i] = True
            else:
                out[i].append(int(tokens[i]))
        if done.all():
            break
    return out


def beam(step: Step, state: Any, batch: int, max_len: int, k: int, bos: int, eos: int,
         length_penalty: float) -> list[list[int]]:
    """Beam search of width ``k`` for every sentence of the batch at once (``batch * k`` decoder rows).

    Each step extends the live hypotheses by every token and keeps the ``k`` best
    continuations; an ``</s>`` among the ``k`` best candidates finishes a hypothesis (scored
    ``log p / length ** length_penalty``; the ``k`` best finished ones are kept). A sentence
    is done when it has ``k`` finished hypotheses and no live one can still beat the worst
    of them (log-probabilities only fall as a hypothesis grows), or at ``max_len`` tokens,
    where the live hypotheses compete as they are.
    """
    def gather(s: Any, rows: np.ndarray) -> Any:
        return tuple(part[:, rows] for part in s) if isinstance(s, tuple) else s[:, rows]

    state = gather(state, np.repeat(np.arange(batch), k))  # rows b*k .. b*k+k-1: sentence b's hypotheses
    scores = np.full((batch, k), -np.inf)
    scores[:, 0] = 0.0  # one live hypothesis at the start
    history: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(batch)]
    tokens = np.full(batch * k, bos, dtype=np.int64)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)
    alpha = float(length_penalty)
    for t in range(max_len):
        logp, state = step(tokens, state)
        vocab = logp.shape[1]
        cand = (scores[:, :, None] + logp.reshape(batch, k, vocab)).reshape(batch, k * vocab)
        m = min(2 * k, cand.shape[1])  # k live ones remain even if k of the best are </s>
        top = np.argpartition(-cand, m - 1, axis=1)[:, :m]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(cand, top, 1), axis=1, kind="stable"), 1)
        new_scores = np.full((batch, k), -np.inf)
        parents = np.tile(np.arange(k), (batch, 1))
        new_tokens = np.full((batch, k), eos, dtype=np.int64)
        new_history: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(batch)]
        for b in np.flatnonzero(~done):
            alive = 0
            for rank, flat in enumerate(top[b]):
                score = cand[b, flat]
                if not np.isfinite(score) or alive == k:
                    break
                parent, token = divmod(int(flat), vocab)
                if token == eos:
                    if rank < k:
                        finished[b].append((score / (t + 1) ** alpha, history[b][parent]))
                    continue
                new_scores[b, alive] = score
                parents[b, alive] = parent
                new_tokens[b, alive] = token
                new_history[b][alive] = history[b][parent] + [token]
                alive += 1
            finished[b].sort(key=lambda item: -item[0])
            del finished[b][k:]
            # The best a live hypothesis can still reach: no further loss, the most favourable length.
            best_possible = new_scores[b, 0] / (max_len ** alpha if alpha > 0 else 1.0)
            if alive == 0 or (len(finished[b]) >= k and best_possible <= finished[b][-1][0]):
                done[b] = True
                new_scores[b] = -np.inf
        if done.all():
            break
        scores, history, tokens = new_scores, new_history, new_tokens.ravel()
        state = gather(state, (parents + np.arange(batch)[:, None] * k).ravel())
    else:  # out of steps: the live hypotheses compete as they are
        for b in np.flatnonzero(~done):
            for j in range(k):
                if np.isfinite(scores[b, j]):
                    finished[b].append((scores[b, j] / max_len ** alpha, history[b][j]))
    return [max(f, key=lambda item: item[0])[1] if f else [] for f in finished]
