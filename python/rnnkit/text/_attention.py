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


def _linear(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` over the last axis of ``x`` as one GEMM (numpy runs a 3-D @ 2-D product as a loop of 2-D ones)."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(x.shape[:-1] + (w.shape[-1],))


@dataclass
class Memory:
    """What the decoder attends to: one source batch's encoder outputs and their keys."""

    values: np.ndarray  # (B, S, H) encoder outputs
    keys: np.ndarray  # (B, S, H): the values (dot) or W_a applied to them (general)
    padding: np.ndarray  # (B, S): 0 inside each source, -inf after its end (added to the scores)

    @classmethod
    def of(cls, values: np.ndarray, lengths: np.ndarray, w_score: Optional[np.ndarray]) -> "Memory":
        valid = np.arange(values.shape[1])[None, :] < np.asarray(lengths)[:, None]
        keys = values if w_score is None else _linear(values, w_score.T)
        return cls(values, keys, np.where(valid, 0.0, -np.inf).astype(values.dtype))


@dataclass
class Cache:
    """A forward's intermediates that its backward reads."""

    weights: np.ndarray  # (B, T, S) attention weights
    joined: np.ndarray  # (B, T, 2H): [context; decoder output]
    out: np.ndarray  # (B, T, H) attentional states


def attend(h: np.ndarray, memory: Memory, w_combine: np.ndarray) -> Cache:
    """Attentional states ``tanh(W_c [c_t; h_t])`` for decoder outputs ``h`` of shape (B, T, H)."""
    scores = h @ memory.keys.transpose(0, 2, 1)
    scores += memory.padding[:, None, :]  # every source has a valid position: no row is all -inf
    scores -= scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores, out=scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    joined = np.concatenate([weights @ memory.values, h], axis=-1)
    return Cache(weights, joined, np.tanh(_linear(joined, w_combine.T)))


def attend_step(h: np.ndarray, memory: Memory, w_combine: np.ndarray) -> np.ndarray:
    """Attentional states for one decoding step's outputs ``h`` of shape (rows, H).

    The rows belong to the memory's sources in order, each source's rows consecutive and as
    many for every source (a beam's hypotheses): they attend as the steps of one source do,
    so that each source's keys and values are read once, however wide the beam.
    """
    per_source = h.shape[0] // memory.values.shape[0]
    queries = h.reshape(memory.values.shape[0], per_source, h.shape[1])
    return attend(queries, memory, w_combine).out.reshape(h.shape)


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
    d_joined = _linear(d_pre, w_combine)
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
    return d_h, d_values + _linear(d_keys, w_score), d_w_combine, d_w_score
