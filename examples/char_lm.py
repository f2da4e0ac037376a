"""Train a character-level LSTM language model on the Python documentation that ships with
every CPython (``pydoc_data.topics``), then sample from it.

The recurrent layer, its back-propagation through time and the gradient clipping are
rnnkit's; the softmax read-out and the Adam update are a few lines of numpy here.

    python examples/char_lm.py [--epochs N] [--hidden H] [--seed S]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from pydoc_data.topics import topics

import rnnkit


def load_corpus(max_chars: int) -> tuple[np.ndarray, list[str]]:
    text = "\n".join(topics[k] for k in sorted(topics))[:max_chars]
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    vocab = sorted(ch for ch, n in counts.items() if n >= 20) + ["\x00"]  # "\x00": rare characters
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = np.array([index.get(ch, len(vocab) - 1) for ch in text], dtype=np.int64)
    return ids, vocab


class Adam:
    """Adam over a list of arrays, updated in place."""

    def __init__(self, params: list[np.ndarray], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= self.lr * (m / (1 - b1**self.t)) / (np.sqrt(v / (1 - b2**self.t)) + eps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--chars", type=int, default=300_000, help="characters of the corpus to train on")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    ids, vocab = load_corpus(args.chars)
    V, H, B, T = len(vocab), args.hidden, 32, 64
    print(f"corpus: {ids.size:,} characters, vocabulary {V}; LSTM hidden {H}, batch {B} x {T} steps")
    rnnkit.show_config()

    rng = np.random.default_rng(args.seed)
    lstm = rnnkit.LSTM(V, H, batch_first=True, seed=args.seed)
    head_w = rng.uniform(-1 / np.sqrt(H), 1 / np.sqrt(H), (H, V)).astype(np.float32)
    head_b = np.zeros(V, dtype=np.float32)
    params = list(lstm.params.values()) + [head_w, head_b]
    opt = Adam(params, lr=3e-3)
    eye = np.eye(V, dtype=np.float32)

    # B parallel streams through the text; state carries over between chunks (truncated BPTT).
    stream_len = (ids.size - 1) // B
    streams = ids[: B * stream_len + 1]
    for epoch in range(args.epochs):
        state, losses, start = None, [], time.perf_counter()
        for pos in range(0, stream_len - T, T):
            cols = np.arange(B)[:, None] * stream_len + pos + np.arange(T)[None, :]
            x, y = eye[streams[cols]], streams[cols + 1]
            out, state = lstm.forward(x, state, training=True)
            logits = out @ head_w + head_b
            logits -= logits.max(-1, keepdims=True)
            prob = np.exp(logits)
            prob /= prob.sum(-1, keepdims=True)
            losses.append(-np.log(np.take_along_axis(prob, y[..., None], -1)).mean())
            dlogits = prob
            np.add.at(dlogits.reshape(-1, V), (np.arange(B * T), y.ravel()), -1.0)
            dlogits /= B * T
            grad_w = out.reshape(-1, H).T @ dlogits.reshape(-1, V)
            grad_b = dlogits.sum((0, 1))
            lstm.backward(dlogits @ head_w.T)
            grads = list(lstm.grads.values()) + [grad_w, grad_b]
            rnnkit.clip_grad_norm(grads, max_norm=1.0)
            opt.step(grads)
        secs = time.perf_counter() - start
        rate = len(losses) * B * T / secs
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.3f} (bits/char {np.mean(losses) / np.log(2):.2f}), "
              f"{rate:,.0f} chars/s")

    # Sample, one character at a time, carrying the state.
    prompt = "The return statement"
    state = None
    for ch in prompt[:-1]:
        _, state = lstm.forward(eye[[vocab.index(ch) if ch in vocab else V - 1]], state)
    text, ch = prompt, prompt[-1]
    for _ in range(300):
        out, state = lstm.forward(eye[[vocab.index(ch) if ch in vocab else V - 1]], state)
        logits = (out[-1] @ head_w + head_b) / 0.7
        p = np.exp(logits - logits.max())
        ch = vocab[rng.choice(V, p=p / p.sum())]
        text += ch if ch != "\x00" else "?"
    print("\nsample:\n" + text)


if __name__ == "__main__":
    main()
