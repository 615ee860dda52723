#!/usr/bin/env bash
# Installs dependencies, builds zfold from scratch and runs the default test suite, the unit tests under ASan+UBSan,
# and the CUDA backend's parity test on the CPU emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2}
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Each test stage's wall time and the largest resident set of any one process in it.
stage() { local name=$1; shift; /usr/bin/time -f "test stage $name: %e s, peak resident %M KiB" "$@"; }

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
(cd build && stage default ctest --output-on-failure -L 'unit|cli|mpi|slurm' -j 1)
# The tokenizer against Hugging Face's JavaScript tokenizer: needs node and the npm registry, skipped without them.
if command -v node >/dev/null && command -v npm >/dev/null; then
  (cd build && stage npm ctest -L npm -j 1 --verbose)  # verbose: a skip (registry unreachable) says why
else
  echo "test stage npm: skipped (node or npm not installed; Debian: apt-get install nodejs npm)"
fi

cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZF_ASAN=ON -DZF_UBSAN=ON -DZF_WITH_CUDA=OFF >/dev/null
cmake --build build-sanitize -j "$jobs"
# LeakSanitizer with tests/lsan.supp: Open MPI's, hwloc's and UBSan's own allocations are not reported, zfold's are.
# Open MPI's components stay loaded to the end and allocations get whole stacks (the libraries have no frame
# pointers), so that an allocation made inside Open MPI matches its suppression wherever it was called from.
supp=$(pwd)/tests/lsan.supp
(cd build-sanitize && stage sanitize env ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 LSAN_OPTIONS=suppressions=$supp \
  OMPI_MCA_mca_base_component_disable_dlclose=1 \
  ctest --output-on-failure -L unit -j 1)

# The CUDA backend's own code (kernels, cuBLAS and cuSOLVER calls, device memory) against the CPU backend, and NCCL
# faults in two-rank runs, on the CUDA emulator in tests/cuda_emu: no GPU needed.
cmake -S . -B build-emu -G Ninja -DCMAKE_BUILD_TYPE=Release -DZF_CUDA_EMULATOR=ON >/dev/null
cmake --build build-emu -j "$jobs" --target test_emulator test_gpu_parity zfold
(cd build-emu && stage emulator ctest --output-on-failure -R '^(test_emulator|test_gpu_parity|gpu_nccl_faults)$' -j 1)
