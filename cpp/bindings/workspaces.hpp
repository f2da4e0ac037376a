// Reusable call memory (rnnkit::Tape, rnnkit::ModelWorkspace) as seen from Python: how much it
// holds, and claiming one for a call. Python keeps small pools of them (rnnkit/_workspaces.py,
// used by the layers and the estimators' model calls); a workspace serves one call at a time.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>

#include "bindings.hpp"
#include "rnnkit/model.hpp"

namespace rnnkit_py {

template <class T>
std::size_t vector_bytes(const rnnkit::AlignedVector<T>& v) {
  return v.capacity() * sizeof(T);
}

template <class T>
std::size_t direction_bytes(const typename rnnkit::Tape<T>::Direction& d) {
  return vector_bytes(d.gates) + vector_bytes(d.states) + vector_bytes(d.cells) + vector_bytes(d.extra);
}

/// Bytes a tape holds: its record and its scratch.
template <class T>
std::size_t tape_bytes(const rnnkit::Tape<T>& t) {
  const auto& s = t.scratch;
  std::size_t n = 0;
  for (const auto& d : s.directions) n += direction_bytes<T>(d);
  for (const auto* v : {&s.input, &s.output, &s.grad_input, &s.grad_input_reverse, &s.grad_output}) {
    n += vector_bytes(*v);
  }
  for (const auto& g : s.gate_grads) n += vector_bytes(g.input) + vector_bytes(g.hidden);
  for (const auto& o : s.stack_outputs) n += vector_bytes(o);
  for (const auto& p : s.packed) {
    n += vector_bytes(p.ih_spare) + vector_bytes(p.hh_spare) + p.ih.bytes() + p.hh.bytes();
    for (const auto* units : {&p.hh_units, &p.ih_units}) {
      for (const auto& u : *units) n += u.bytes();
    }
  }
  for (const auto& layer : t.layers) {
    n += vector_bytes(layer.input) + vector_bytes(layer.dropout_scale);
    for (const auto& d : layer.directions) n += direction_bytes<T>(d);
  }
  return n;
}

/// Bytes a model workspace holds.
template <class T>
std::size_t workspace_bytes(const rnnkit::ModelWorkspace<T>& w) {
  std::size_t n = tape_bytes(w.tape);
  for (const auto* v : {&w.out, &w.h_n, &w.c_n, &w.embedded, &w.features, &w.valid, &w.head, &w.grad_features,
                        &w.grad_x, &w.grad_h0, &w.grad_c0, &w.grad_h_n}) {
    n += vector_bytes(*v);
  }
  return n;
}

/// The tape a workspace's calls lock.
template <class T>
rnnkit::Tape<T>& tape_of(rnnkit::Tape<T>& t) { return t; }
template <class T>
rnnkit::Tape<T>& tape_of(rnnkit::ModelWorkspace<T>& w) { return w.tape; }

/// A workspace of type W for one call, locked: `obj` itself (None: a new one), or a new one where
/// another call holds `obj`. Call with the GIL held; the lock is released by the caller.
template <class W>
std::pair<py::object, std::unique_lock<std::mutex>> claim(py::object obj) {
  if (!obj.is_none()) {
    std::unique_lock<std::mutex> lock(tape_of(obj.cast<W&>()).busy, std::try_to_lock);
    if (lock.owns_lock()) return {std::move(obj), std::move(lock)};
  }
  py::object fresh = py::cast(std::make_unique<W>());
  std::unique_lock<std::mutex> lock(tape_of(fresh.cast<W&>()).busy);
  return {std::move(fresh), std::move(lock)};
}

}  // namespace rnnkit_py
