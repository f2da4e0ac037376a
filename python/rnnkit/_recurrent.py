"""The machinery shared by rnnkit's recurrent layers (:class:`_Recurrent`): parameters in one flat
buffer with PyTorch's names and layouts, forward and backward through the C++ engine (or the CUDA
backend), the streaming step, gradients, freezing and pickling. The public classes, ``RNN``,
``LSTM`` and ``GRU``, are in :mod:`rnnkit.layers`.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np

from . import _checks, _threads
from . import cuda as _cuda
from ._backend import core, dtype_suffix, kernel
from ._buffers import _aligned_zeros, _read_only_copy, frozen_flag
from ._workspaces import WorkspacePool

State = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


class _Recurrent:
    """Shared machinery of RNN, LSTM and GRU (a stack of layers of one cell)."""

    _mode: str = ""  # "rnn_tanh", "rnn_relu", "lstm" or "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        dtype: Any = "float32",
        seed: Optional[int] = None,
        n_threads: Optional[int] = None,
        device: str = "cpu",
    ) -> None:
        self.input_size = _checks.check_int(input_size, "input_size", 1)
        self.hidden_size = _checks.check_int(hidden_size, "hidden_size", 1)
        self.num_layers = _checks.check_int(num_layers, "num_layers", 1)
        self.bias = _checks.check_bool(bias, "bias")
        self.batch_first = _checks.check_bool(batch_first, "batch_first")
        self.dropout = _checks.check_float(dropout, "dropout")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.bidirectional = _checks.check_bool(bidirectional, "bidirectional")
        self.dtype = _checks.check_dtype(dtype)
        if seed is not None:
            seed = _checks.check_int(seed, "seed", 0)
        self.seed = seed
        self.n_threads = None if n_threads is None else _checks.check_int(n_threads, "n_threads", 1)
        # Checked for form here; a CUDA device's availability when the layer first runs there
        # (RuntimeError saying why), so that a layer pickled on a GPU machine loads anywhere.
        self._device_index = _cuda.parse_device(device)
        self.device = device

        _checks.check_stack_size(self._mode, self.input_size, self.hidden_size, self.num_layers, self.bidirectional,
                                 self.bias)
        self._spec = core.LayerSpec(
            self._mode, self.input_size, self.hidden_size, self.num_layers, self.bidirectional, self.bias
        )
        self._layout = core.param_layout(self._spec)
        count = core.param_count(self._spec)
        self._flat = _aligned_zeros(count, self.dtype)
        self._flat_grad = _aligned_zeros(count, self.dtype)
        self._params = self._views(self._flat)
        self._grads = self._views(self._flat_grad)
        # Entropy for the weights and for the dropout masks, fixed by `seed` when given.
        self._entropy = np.random.SeedSequence(seed).entropy
        self._dropout_calls = 0
        self._version = 0
        self._tape: Optional[tuple] = None
        self.reset_parameters()

    # ----------------------------------------------------------------------------- params
    def _views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        return {
            name: flat[offset : offset + math.prod(shape)].reshape(shape)
            for name, offset, shape in self._layout
        }

    def _share_params(self, flat: np.ndarray) -> None:
        """Read the parameters from ``flat`` (same layout and dtype) instead of the layer's own buffer.

        For models that keep a stack inside a larger flat buffer (the estimators' stack + head):
        the layer then sees every in-place update of that buffer, with no copy.
        """
        self._check_not_frozen("_share_params")
        if flat.dtype != self.dtype or flat.shape != self._flat.shape or not flat.flags.c_contiguous:
            raise ValueError(f"_share_params: need a contiguous {self.dtype} buffer of {self._flat.size} values")
        self._flat = flat
        self._params = self._views(flat)
        self._version += 1

    def _device_stack(self) -> Any:
        """The device-side stack of this layer (created on first use, kept between calls)."""
        key = (self._device_index, dtype_suffix(self.dtype), _cuda._simulated())
        cached = self.__dict__.get("_device_cache")
        if cached is None or cached[0] != key:
            module = _cuda._require(self._device_index)
            stack = getattr(module, f"Stack_{self.dtype.name}")(
                self._mode, self.input_size, self.hidden_size, self.num_layers, self.bidirectional, self.bias,
                self._device_index,
            )
            cached = self.__dict__["_device_cache"] = (key, stack)
        return cached[1]

    def to(self, device: str) -> "_Recurrent":
        """Run later calls on ``device`` ("cpu", "cuda" or "cuda:N"); returns the layer.

        The parameters stay where they are kept between calls (one numpy buffer), so moving
        is free; a pending :meth:`backward` must follow a forward on the same device.
        """
        index = _cuda.parse_device(device)
        self._device_index = index
        self.device = device
        self.__dict__.pop("_device_cache", None)
        self._tape = None
        return self

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self) -> None:
        """Draw every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch does, seeded."""
        self._check_not_frozen("reset_parameters")
        rng = np.random.default_rng(np.random.SeedSequence(self._entropy))
        bound = 1.0 / math.sqrt(self.hidden_size)
        self._flat[:] = rng.uniform(-bound, bound, size=self._flat.size)
        self._version += 1

    @property
    def frozen(self) -> bool:
        """Whether the weights are read-only and fixed (a copy made by :func:`freeze`)."""
        return frozen_flag(self.__dict__.get("_frozen_owner"))

    def _check_not_frozen(self, what: str) -> None:
        if "_frozen_owner" in self.__dict__:
            raise ValueError(f"{what}: this {type(self).__name__} is frozen (made by rnnkit.freeze), its weights "
                             "cannot change; change the layer it was frozen from and freeze that again")

    def _freeze_in_place(self) -> None:
        """Move the parameters into a read-only buffer (rnnkit.freeze, on its copy)."""
        self._flat, self._frozen_owner = _read_only_copy(self._flat)
        self._params = self._views(self._flat)
        self._version += 1
        self._tape = None
        self.__dict__.pop("_tape_pool", None)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Live views of the parameters (PyTorch's names and shapes), for optimizers.

        Writing into them changes the layer; use :meth:`load_state_dict` to replace values
        with checks.
        """
        return self._params

    @property
    def flat_params(self) -> np.ndarray:
        """Every parameter in one contiguous buffer (what optimizers step)."""
        return self._flat

    @property
    def flat_grads(self) -> np.ndarray:
        """Every gradient in one contiguous buffer, laid out like :attr:`flat_params`."""
        return self._flat_grad

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, with PyTorch's names and shapes."""
        return {name: view.copy() for name, view in self._params.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Load parameters by PyTorch's names (numpy arrays or CPU tensors).

        Raises
        ------
        ValueError
            A key is missing or unexpected (``strict``), a shape differs, or a value is not finite;
            and for the projection weights of PyTorch's ``LSTM(proj_size=...)``, which rnnkit lacks.
        TypeError
            A value is not a real floating-point array.
        """
        self._check_not_frozen("load_state_dict")
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of name -> array, got {type(state_dict).__name__}")
        missing = [k for k in self._params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self._params]
        projections = [k for k in unexpected if str(k).startswith("weight_hr_l")]
        if projections:  # with strict=False too: its weight_hh has P columns, not hidden_size
            raise ValueError(
                f"state_dict holds {projections}: an LSTM with projections (PyTorch's proj_size), which rnnkit's "
                "LSTM does not have"
            )
        if strict and (missing or unexpected):
            raise ValueError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        staged = {}
        for name, view in self._params.items():
            if name not in state_dict:
                continue
            value = _checks.float_array(state_dict[name], f"state_dict[{name!r}]", self.dtype)
            _checks.expect_shape(value, view.shape, f"state_dict[{name!r}]")
            staged[name] = value
        for name, value in staged.items():  # all checked first: a failed load changes nothing
            self._params[name][...] = value
        self._version += 1

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Gradients of the last :meth:`backward`, same keys and shapes as ``state_dict()``.

        The arrays are live views: clipping them in place changes what an optimizer sees.
        """
        return self._grads

    def zero_grad(self) -> None:
        """Set every gradient to zero."""
        self._flat_grad.fill(0)

    # ---------------------------------------------------------------------------- forward
    def _threads(self) -> int:
        return self.n_threads if self.n_threads is not None else _threads.default_threads()

    def _state_arrays(self, state: Any, batch: int, unbatched: bool, name: str) -> tuple:
        """(h0, c0) as C-contiguous (L*dirs, B, H) arrays or None."""
        if state is None:
            return None, None
        lstm = self._mode == "lstm"
        if lstm:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{name} must be a tuple (h, c) for LSTM")
            parts = [(state[0], f"{name}[0]"), (state[1], f"{name}[1]")]
        else:
            parts = [(state, name)]
        shape = (self.num_layers * self.num_directions, batch, self.hidden_size)
        out = []
        for value, label in parts:
            if value is None:
                out.append(None)
                continue
            arr = _checks.float_array(value, label, self.dtype)
            if unbatched:
                _checks.expect_shape(arr, (shape[0], shape[2]), label)
                arr = np.ascontiguousarray(arr[:, None, :])
            _checks.expect_shape(arr, shape, label)
            out.append(arr)
        return (out[0], out[1]) if lstm else (out[0], None)

    def _lengths(self, lengths: Any, batch: int, steps: int) -> Optional[np.ndarray]:
        if lengths is None:
            return None
        arr = _checks.as_array(lengths)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
        if arr.ndim != 1 or arr.shape[0] != batch:
            raise ValueError(f"lengths must have shape ({batch},) (one per sequence), got {arr.shape}")
        if arr.size and (arr.min() < 1 or arr.max() > steps):
            raise ValueError(f"lengths must lie in [1, {steps}] (the number of steps), got {arr.min()}..{arr.max()}")
        return _checks.aligned(np.ascontiguousarray(arr, dtype=np.int64))

    def forward(
        self,
        x: Any,
        state: Optional[State] = None,
        lengths: Any = None,
        training: bool = False,
    ) -> tuple:
        """Run the stack over a batch of sequences.

        Parameters
        ----------
        x : array, shape (T, B, input_size), or (B, T, input_size) with ``batch_first``
            The sequences; a 2-D (T, input_size) array is one unbatched sequence.
        state : array (L*dirs, B, H), or for LSTM a tuple (h0, c0) of them, optional
            Initial state; zeros when omitted.
        lengths : sequence of int, shape (B,), optional
            Valid steps of each sequence, in [1, T], any order. Outputs past a length are zero
            and the final state is the one at the last valid step (PyTorch's packed sequences).
        training : bool
            Apply dropout between layers and keep what :meth:`backward` needs.

        Returns
        -------
        out : array, shape (T, B, dirs*H) (or (B, T, dirs*H) with ``batch_first``)
            In training, a unidirectional layer's top states live in ``out`` until
            :meth:`backward` (no second copy of them). Changing ``out`` in place is allowed,
            say ``g = out; g -= target``: backward then recomputes the top layer's states.
        state : h_n of shape (L*dirs, B, H), or for LSTM a tuple (h_n, c_n)
        """
        training = _checks.check_bool(training, "training")
        x = _checks.float_array(x, "x", self.dtype, finite=False)  # NaN and Inf: ValueError from the C++ call
        unbatched = x.ndim == 2
        if unbatched:
            x = x[None] if self.batch_first else x[:, None]
        if x.ndim != 3:
            raise ValueError(
                f"x must be 3-D ({'B, T' if self.batch_first else 'T, B'}, input_size) or 2-D (T, input_size), "
                f"got shape {x.shape}"
            )
        steps, batch = (x.shape[1], x.shape[0]) if self.batch_first else (x.shape[0], x.shape[1])
        if x.shape[2] != self.input_size:
            raise ValueError(f"x must have input_size={self.input_size} features in its last axis, got {x.shape[2]}")
        if steps == 0:
            raise ValueError("x must have at least one time step (T >= 1)")
        if batch == 0:
            raise ValueError("x must hold at least one sequence (empty batch)")
        h0, c0 = self._state_arrays(state, batch, unbatched, "state")
        lengths_arr = self._lengths(lengths, batch, steps)

        dropout_key = 0
        if training and self.dropout > 0.0:
            seq = np.random.SeedSequence(self._entropy, spawn_key=(1, self._dropout_calls))
            dropout_key = int(seq.generate_state(1, np.uint64)[0])
        if self._device_index is not None:
            out, h_n, c_n, tape = self._device_stack().forward(
                self._flat, x, self.batch_first, h0, c0, lengths_arr, training, self.dropout, dropout_key, self.frozen,
            )
        else:
            run = kernel("forward", self.dtype)
            previous, self._tape = self._tape, None
            try:
                out, h_n, c_n, tape = run(
                    self._spec, self._flat, x, self.batch_first, h0, c0, lengths_arr,
                    training, self.dropout, dropout_key, self._threads(), self._take_tape(previous), self.frozen,
                )
            except (ValueError, TypeError):
                # Rejected arguments (x holding NaN): raised before the call takes the previous
                # tape, which still serves its backward.
                self._tape = previous
                raise
            if not training:
                self._keep_tape(tape)
        if training and self.dropout > 0.0:
            self._dropout_calls += 1  # only a call that ran draws its masks
        # `out` stays with the tape: the top layer keeps its states in out's memory until backward
        # (which checks that out is unchanged, and recomputes them where it changed).
        self._tape = (tape, self._version, out, unbatched) if training else None
        if unbatched:
            out = out[0] if self.batch_first else out[:, 0]
            h_n = h_n[:, 0]
            c_n = c_n[:, 0] if c_n is not None else None
        return (out, (h_n, c_n)) if self._mode == "lstm" else (out, h_n)

    __call__ = forward

    def step(self, x: Any, state: Optional[State] = None) -> tuple:
        """Advance the stack by one time step (streaming and autoregressive use).

        The arithmetic is that of one step of :meth:`forward`; a loop of ``step`` calls
        reproduces ``forward`` to rounding. Scratch memory is kept per thread and reused,
        and the GIL is released while the step runs.

        Parameters
        ----------
        x : array, shape (B, input_size), or (input_size,) for one sequence
            The inputs of this step.
        state : array (num_layers, B, H), or for LSTM a tuple (h, c) of them, optional
            The state after the previous step; zeros when omitted.

        Returns
        -------
        y : array, shape (B, H) (or (H,))
            The top layer's output at this step.
        state : like ``state``
            The state after this step, to pass to the next call.

        Raises
        ------
        ValueError
            For a bidirectional layer (its reverse direction reads the future), or bad shapes.
        """
        # The streaming loop's path first, written out here (at H=64 each Python frame between
        # here and the compiled call costs a few % of a step). The compiled call takes C-contiguous aligned arrays of the
        # layer's dtype and batched shapes and checks that they are finite (at batch 1 a numpy
        # call per array costs more than the step); for anything else it returns None, and for
        # NaN/Inf raises, and the general path below converts, checks and names the culprit.
        local = self.__dict__.get("_step_tls")
        if getattr(local, "fast", None) is None:
            local = self._step_local()
        try:
            result = local.fast(self._spec, self._flat, x, state, local.workspace, self._threads())
        except ValueError:
            result = None
        if result is not None:
            return result
        return self._step_general(x, state)

    def _step_general(self, x: Any, state: Optional[State]) -> tuple:
        """:meth:`step` for any arguments: conversions, checks and their messages."""
        if self.bidirectional:
            raise ValueError("step() needs a unidirectional layer: a bidirectional one reads the future")
        x = _checks.float_array(x, "x", self.dtype)
        unbatched = x.ndim == 1
        if unbatched:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"x must have shape (B, {self.input_size}) or ({self.input_size},), got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError("x must hold at least one sequence (empty batch)")
        h0, c0 = self._state_arrays(state, x.shape[0], unbatched, "state")
        y, h_n, c_n = self._step_run(x, h0, c0)
        if unbatched:
            y, h_n = y[0], h_n[:, 0]
            c_n = c_n[:, 0] if c_n is not None else None
        return (y, (h_n, c_n)) if self._mode == "lstm" else (y, h_n)

    def _step_local(self) -> Any:
        """This thread's step workspace (and the compiled calls), made on first use."""
        local = self.__dict__.get("_step_tls")
        if local is None:
            local = self.__dict__.setdefault("_step_tls", threading.local())
        if getattr(local, "workspace", None) is None:
            local.workspace = kernel("StepWorkspace", self.dtype)()
            local.run = kernel("step", self.dtype)
            local.fast = kernel("step_fast", self.dtype)
        return local

    def _step_run(self, x: np.ndarray, h0: Optional[np.ndarray], c0: Optional[np.ndarray]) -> tuple:
        """The compiled step with this thread's reusable workspace."""
        local = self._step_local()
        return local.run(self._spec, self._flat, x, h0, c0, local.workspace, self._threads())

    def backward(
        self,
        grad_out: Any = None,
        grad_state: Optional[State] = None,
        accumulate: bool = False,
    ) -> tuple:
        """Back-propagate through time from the last ``forward(..., training=True)``.

        Parameters
        ----------
        grad_out : array shaped like that forward's ``out``, optional
            dL/d(out); zeros when omitted.
        grad_state : like that forward's returned state, optional
            dL/d(h_n) (LSTM: a tuple (dL/dh_n, dL/dc_n), either may be None).
        accumulate : bool
            Add the parameter gradients to :attr:`grads` instead of replacing them.

        Returns
        -------
        grad_x : array shaped like x
        grad_state : dL/d(h0), or for LSTM a tuple (dL/dh0, dL/dc0)
        """
        if self._tape is None:
            raise ValueError("backward() needs a preceding forward(..., training=True) on this layer")
        tape, version, out, unbatched = self._tape
        if version != self._version:
            raise ValueError("backward(): the parameters changed since the training forward; run forward again")
        accumulate = _checks.check_bool(accumulate, "accumulate")
        g_out = None
        if grad_out is not None:
            g_out = _checks.float_array(grad_out, "grad_out", self.dtype, finite=False)  # checked in C++
            if unbatched:
                g_out = g_out[None] if self.batch_first else g_out[:, None]
            _checks.expect_shape(g_out, out.shape, "grad_out")
        g_h, g_c = self._state_arrays(grad_state, tape.batch, unbatched, "grad_state")
        # The call clears the gradients (unless accumulating) once it has checked its arguments.
        if self._device_index is not None:
            grad_x, grad_h0, grad_c0 = self._device_stack().backward(
                tape, self._flat, g_out, g_h, g_c, self._flat_grad, self.batch_first, accumulate
            )
        else:
            run = kernel("backward", self.dtype)
            grad_x, grad_h0, grad_c0 = run(
                tape, self._flat, g_out, g_h, g_c, self._flat_grad, accumulate, self._threads()
            )
        if unbatched:
            grad_x = grad_x[0] if self.batch_first else grad_x[:, 0]
            grad_h0 = grad_h0[:, 0]
            grad_c0 = grad_c0[:, 0] if grad_c0 is not None else None
        return (grad_x, (grad_h0, grad_c0)) if self._mode == "lstm" else (grad_x, grad_h0)

    # ------------------------------------------------------------------------- plumbing
    # A forward call's buffers are kept in a tape and reused by the next call (_workspaces.py).
    def _take_tape(self, previous: Optional[tuple] = None) -> Any:
        """A tape to reuse: the last training forward's (a backward still running on it makes the
        C++ call take a new one), else one from the pool, else None (the call makes one)."""
        if previous is not None:
            return previous[0]
        pool = self.__dict__.get("_tape_pool")
        return pool.take() if pool is not None else None

    def _keep_tape(self, tape: Any) -> None:
        pool = self.__dict__.get("_tape_pool")
        if pool is None:
            pool = self.__dict__.setdefault("_tape_pool", WorkspacePool())
        pool.give(tape)

    def _extra_repr(self) -> str:
        parts = [f"{self.input_size}", f"{self.hidden_size}"]
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        if not self.bias:
            parts.append("bias=False")
        if self.batch_first:
            parts.append("batch_first=True")
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        if self.bidirectional:
            parts.append("bidirectional=True")
        if self.dtype != np.float32:
            parts.append(f"dtype={self.dtype.name!r}")
        if self.device != "cpu":
            parts.append(f"device={self.device!r}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._extra_repr()})"

    def __getstate__(self) -> dict:
        return {  # the tape and per-thread step scratch are not kept
            "params": self._init_params(),
            "flat": self._flat.copy(),
            "flat_grad": self._flat_grad.copy(),
            "entropy": self._entropy,
            "dropout_calls": self._dropout_calls,
            "frozen": "_frozen_owner" in self.__dict__,
        }

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state["params"])
        self._flat[:] = state["flat"]
        self._flat_grad[:] = state["flat_grad"]
        self._entropy = state["entropy"]
        self._dropout_calls = state["dropout_calls"]
        if state.get("frozen", False):
            self._freeze_in_place()

    def _init_params(self) -> dict:
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
            "dtype": self.dtype.name,
            "seed": self.seed,
            "n_threads": self.n_threads,
            "device": self.device,
        }
