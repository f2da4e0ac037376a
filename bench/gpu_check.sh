#!/usr/bin/env bash
# GPU check, one command on a machine with an NVIDIA GPU (H100/H200), nvcc, compute-sanitizer and
# a CUDA build of PyTorch, with no network:
#   1. installs the wheels in .whl/ (if any) into /tmp/site, on PYTHONPATH;
#   2. builds and installs rnnkit with the CUDA backend (sm_90) into the running python3;
#   3. runs the tests with a device variant (test_cuda, test_device_host, test_device_estimators,,
#      test_device_train_step and the multi-label device fit) with RNNKIT_REQUIRE_CUDA=1 (a skip fails);
#   4. runs bench/gpu_smoke.py under compute-sanitizer --tool memcheck;
#   5. runs bench/gpu_probe.py (float32 exactness of rnnkit, cuDNN and torch; copy rates; 20 s);
#   6. runs bench/gpu_fit.py --markdown (estimator training steps: clipping and Adam on the
#      device against them on the host, and against torch; about 20 s);
#   7. runs bench/gpu_bench.py --markdown (rnnkit vs torch/cuDNN; about 3 minutes).
# Logs and the table go to $OUT when set, else ./gpu_out: build.log, tests.log, sanitizer.log,
# probe.log, fit.log, gpu_fit.md, bench.log, gpu_table.md, summary.txt. Every step runs even
# when an earlier check fails (not when the build does); the exit status is 1 when any step failed.
#
# Wheels the GPU machine lacks (it has torch, numpy, pytest, pybind11, scikit-build-core, cmake,
# ninja and nvidia-cublas): Eigen for the build. Once, here, in the repo root (.whl/ is ignored):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl cmeel cmeel-eigen
# and carry .whl to the machine (add scikit-build-core==1.1.2 to that line if the machine's is
# older than 0.11; step 1 prints the versions found there).
#
# Options (environment): RNNKIT_GPU_BENCH_ARGS (e.g. "--quick" or "-k lstm"), RNNKIT_GPU_SKIP
# (words: tests sanitizer probe fit bench), RNNKIT_SIMD_LEVELS (default "generic;avx2;avx512"),
# RNNKIT_CUDA_ARCHITECTURES (default 90).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu_out}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
skip=" ${RNNKIT_GPU_SKIP:-} "
summary="$out/summary.txt"
: >"$summary"
status=0
t_all=$(date +%s)

# run NAME LOG CMD...: runs CMD, output to the terminal and to $out/LOG, a line in summary.txt
run() {
  local name=$1 log=$2 start rc
  shift 2
  echo "== $name"
  start=$(date +%s)
  "$@" 2>&1 | tee -a "$out/$log"
  rc=${PIPESTATUS[0]}
  echo "== $name: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)"), $(( $(date +%s) - start )) s" | tee -a "$summary"
  [ "$rc" -eq 0 ] || status=1
  return "$rc"
}

{
  echo "== machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi failed"
  command -v nvcc >/dev/null && nvcc --version | tail -n 2 || ls -l /usr/local/cuda/bin/nvcc 2>&1
  "$py" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '| gpu', torch.cuda.is_available())" 2>&1
} | tee "$out/build.log"

# 1. wheels carried in .whl/
if compgen -G ".whl/*.whl" >/dev/null; then
  run "install carried wheels (.whl/)" build.log \
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed" | tee -a "$summary"; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$py" -m pip list 2>/dev/null | grep -i -E "^(scikit.build.core|pybind11|cmeel|numpy|torch|nvidia-cublas|pytest) " | tee -a "$out/build.log"

# 2. build with CUDA
export RNNKIT_CUDA_ARCHITECTURES="${RNNKIT_CUDA_ARCHITECTURES:-90}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
if ! run "build rnnkit with CUDA (sm_$RNNKIT_CUDA_ARCHITECTURES)" build.log \
    "$py" -m pip install -v --no-build-isolation --no-deps -Cbuild-dir=build/gpu \
    -Ccmake.define.RNNKIT_CUDA=ON "-Ccmake.define.RNNKIT_CUDA_ARCHITECTURES=$RNNKIT_CUDA_ARCHITECTURES" \
    "-Ccmake.define.RNNKIT_SIMD_LEVELS=${RNNKIT_SIMD_LEVELS:-generic;avx2;avx512}" .; then
  echo "build failed: nothing else runs (see build.log)" | tee -a "$summary"
  exit 1
fi
# (the repo root has no rnnkit/ folder: this imports the installed package)
run "rnnkit.cuda" build.log "$py" -c "import rnnkit, rnnkit.cuda as c; rnnkit.show_config(); print('cuda available:', c.is_available(), '|', c.unavailable_reason(), '| devices:', c.device_count())"

# 3. tests, skips are failures
if [[ $skip != *" tests "* ]]; then
  run "tests (RNNKIT_REQUIRE_CUDA=1)" tests.log \
    env RNNKIT_REQUIRE_CUDA=1 "$py" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_device_host.py \
    tests/test_device_estimators.py tests/test_device_train_step.py tests/test_multilabel.py::test_device_model_fits_as_the_cpu
fi

# 4. memcheck
if [[ $skip != *" sanitizer "* ]]; then
  cs="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
  run "compute-sanitizer memcheck: bench/gpu_smoke.py" sanitizer.log \
    "$cs" --tool memcheck --error-exitcode 99 --print-limit 20 "$py" bench/gpu_smoke.py
fi

# 5. exactness and copy rates
if [[ $skip != *" probe "* ]]; then
  run "probe: bench/gpu_probe.py" probe.log "$py" bench/gpu_probe.py
fi

# 6. training steps: the table to gpu_fit.md
if [[ $skip != *" fit "* ]]; then
  run "training steps: bench/gpu_fit.py" fit.log bash -c "\"$py\" bench/gpu_fit.py --markdown > \"$out/gpu_fit.md\""
  cat "$out/gpu_fit.md"
fi

# 7. benchmark: the table to gpu_table.md, progress to bench.log
if [[ $skip != *" bench "* ]]; then
  # shellcheck disable=SC2086
  run "benchmark: bench/gpu_bench.py" bench.log \
    bash -c "\"$py\" bench/gpu_bench.py --markdown ${RNNKIT_GPU_BENCH_ARGS:-} > \"$out/gpu_table.md\""
  cat "$out/gpu_table.md"
fi

echo "== gpu_check: $([ "$status" -eq 0 ] && echo ALL OK || echo FAILED), $(( $(date +%s) - t_all )) s" | tee -a "$summary"
cat "$summary"
exit "$status"
