"""Global attention over the encoder's outputs (Luong, Pham and Manning, 2015), forward and backward.

At every target step ``t`` the decoder's output ``h_t`` scores each source position ``s``:
``"dot"``: ``h_t . e_s``; ``"general"``: ``h_t . (W_a e_s)``. A softmax over the source's
valid positions gives the weights ``a_ts``, the context is ``c_t = sum_s a_ts e_s``, and the
attentional state ``tanh(W_c [c_t; h_t])`` replaces ``h_t`` as the input of the output layer.
The attention reads the decoder's outputs and does not feed back into its recurrence (no "input
feeding"), so teacher-forced training still runs each recurrent stack in one ``forward``.

Arrays are batch-first: decoder outputs ``(B, T, H)``, encoder outputs ``(B, S, H)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

SCORES = ("dot", "general")


@dataclass
class Memory:
    """What the decoder attends to: one source batch's encoder outputs and their keys."""

    values: np.ndarray  # (B, S, H) encoder outputs
    keys: np.ndarray  # (B, S, H): the values (dot) or W_a applied to them (general)
    valid: np.ndarray  # (B, S) bool, True inside each source

    @classmethod
    def of(cls, values: np.ndarray, lengths: np.ndarray, w_score: Optional[np.ndarray]) -> "Memory":
        valid = np.arange(values.shape[1])[None, :] < np.asarray(lengths)[:, None]
        keys = values if w_score is None else values @ w_score.T
        return cls(values, keys, valid)

    def repeat(self, k: int) -> "Memory":
        """Each source's rows ``k`` times in a row (the layout of a beam of width ``k``)."""
        return Memory(*(np.repeat(a, k, axis=0) for a in (self.values, self.keys, self.valid)))


@dataclass
class Cache:
    """A forward's intermediates that its backward reads."""

    weights: np.ndarray  # (B, T, S) attention weights
    joined: np.ndarray  # (B, T, 2H): [context; decoder output]
    out: np.ndarray  # (B, T, H) attentional states


def attend(h: np.ndarray, memory: Memory, w_combine: np.ndarray) -> Cache:
    """Attentional states ``tanh(W_c [c_t; h_t])`` for decoder outputs ``h`` of shape (B, T, H)."""
    scores = h @ memory.keys.transpose(0, 2, 1)
    scores = np.where(memory.valid[:, None, :], scores, -np.inf)  # every source has a valid position
    scores -= scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    joined = np.concatenate([weights @ memory.values, h], axis=-1)
    return Cache(weights, joined, np.tanh(joined @ w_combine.T))


def attend_step(h: np.ndarray, memory: Memory, w_combine: np.ndarray) -> np.ndarray:
    """Attentional states for one decoding step's outputs ``h`` of shape (B, H)."""
    return attend(h[:, None, :], memory, w_combine).out[:, 0]


def attend_backward(d_out: np.ndarray, h: np.ndarray, memory: Memory, cache: Cache, w_combine: np.ndarray,
                    w_score: Optional[np.ndarray]) -> tuple:
    """Gradients of :func:`attend` given dL/d(out) of shape (B, T, H).

    Returns
    -------
    tuple
        ``(d_h, d_values, d_w_combine, d_w_score)``: with respect to the decoder outputs, the
        encoder outputs, ``W_c`` and ``W_a`` (None for "dot").
    """
    hidden = h.shape[-1]
    d_pre = d_out * (1.0 - cache.out * cache.out)
    d_w_combine = d_pre.reshape(-1, hidden).T @ cache.joined.reshape(-1, 2 * hidden)
    d_joined = d_pre @ w_combine
    d_context, d_h = d_joined[..., :hidden], d_joined[..., hidden:]
    a = cache.weights
    d_values = a.transpose(0, 2, 1) @ d_context
    d_a = d_context @ memory.values.transpose(0, 2, 1)
    d_scores = a * (d_a - (d_a * a).sum(axis=-1, keepdims=True))
    d_h = d_h + d_scores @ memory.keys
    d_keys = d_scores.transpose(0, 2, 1) @ h
    if w_score is None:
        return d_h, d_values + d_keys, d_w_combine, None
    d_w_score = d_keys.reshape(-1, hidden).T @ memory.values.reshape(-1, hidden)
    return d_h, d_values + d_keys @ w_score, d_w_combine, d_w_score
