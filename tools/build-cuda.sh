#!/usr/bin/env bash
# Builds Tandem's GPU binaries on a machine with no GPU and no CUDA install: a stripped
# release `verifier-node`, `tandem` and the CUDA test binary, for one compute capability
# (default 9.0: H100/H200), into dist/cuda/ (or $1), and xz-compressed copies of them
# into dist/gpu/ (beside it), small enough to carry to a GPU machine.
#
# The CUDA 13.0 compiler, headers and libraries come from the Python package index
# (NVIDIA's nvidia-* wheels, unpacked under $TANDEM_CUDA_HOME, default
# ~/.cache/tandem/cuda-13.0). 13.0 because the PTX candle's kernels are compiled to is
# JIT-compiled by the GPU machine's driver, which must be at least as new as the nvcc
# that wrote it (the lent H200s run driver 580, CUDA 13.0), and because the binaries link
# libcublas.so.13 / libcurand.so.10 / libnvrtc.so.13 / libcudart.so.13, which the GPU
# machine's own nvidia-* packages provide (see tools/gpu-check.sh for where they are).
# The driver library itself is not on the index: the link uses a stub libcuda.so.1 made
# here from the driver functions cudarc can call; the GPU machine's real one replaces it
# at run time, as CUDA's own lib/stubs does.
#
# The build has its own target directory (target/cuda), so the CPU build is untouched.
# On two cores it takes about as long as the first CPU build.
#
# Usage: tools/build-cuda.sh [OUT_DIR]     env: CUDA_COMPUTE_CAP (90), TANDEM_CUDA_HOME
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist/cuda}
CAP=${CUDA_COMPUTE_CAP:-90}
PREFIX=${TANDEM_CUDA_HOME:-$HOME/.cache/tandem/cuda-13.0}
export CARGO_TARGET_DIR=${CUDA_TARGET_DIR:-target/cuda}
WHEELS=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
    nvidia-cuda-nvrtc==13.0.88
    nvidia-cublas==13.0.2.14
    nvidia-curand==10.4.0.35
)
CUDA="$PREFIX/nvidia/cu13"

step() { printf '\n== %s\n' "$*" >&2; }

if [ ! -x "$CUDA/bin/nvcc" ] || [ ! -e "$CUDA/nvvm/bin/cicc" ]; then
    step "CUDA 13.0 toolkit from the package index into $PREFIX"
    python3 -m pip install --quiet --no-deps --disable-pip-version-check --target "$PREFIX" "${WHEELS[@]}"
fi
"$CUDA/bin/nvcc" --version | tail -2

step "link names and the driver stub in $CUDA/lib/stubs"
mkdir -p "$CUDA/lib/stubs"
for lib in cublas cublasLt curand nvrtc cudart; do
    real=$(cd "$CUDA/lib" && ls "lib$lib.so."[0-9]* | sort | head -1)
    ln -sfn "../$real" "$CUDA/lib/stubs/lib$lib.so"
done
cudarc=$(cargo metadata --format-version 1 --locked --features tandem-models/cuda 2>/dev/null |
    python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))')
sys_rs="$(dirname "$cudarc")/src/driver/sys/mod.rs"
stub_c="$CUDA/lib/stubs/libcuda_stub.c"
grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$sys_rs" | sed 's/^pub unsafe fn //' | sort -u |
    sed 's/.*/void &(void) {}/' > "$stub_c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA/lib/stubs/libcuda.so" "$stub_c"
echo "libcuda stub: $(wc -l < "$stub_c") driver functions"

step "cargo build --release --features cuda (compute capability $CAP, target $CARGO_TARGET_DIR)"
export CUDA_HOME="$CUDA" CUDA_COMPUTE_CAP="$CAP" PATH="$CUDA/bin:$PATH"
export LD_LIBRARY_PATH="$CUDA/lib:${LD_LIBRARY_PATH:-}"
features=tandem-models/cuda,tandem-verifier/cuda,tandem-experiments/cuda
cargo build --release --locked --features "$features" \
    -p tandem-verifier --bin verifier-node -p tandem-experiments --bin tandem
tests=$(cargo test --release --locked --features cuda -p tandem-models --test cuda \
    --no-run --message-format json-render-diagnostics |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda":
        print(m["executable"])')

step "stripped binaries into $OUT"
mkdir -p "$OUT"
for b in "$CARGO_TARGET_DIR/release/verifier-node" "$CARGO_TARGET_DIR/release/tandem"; do
    strip -o "$OUT/$(basename "$b")" "$b"
done
strip -o "$OUT/cuda-tests" "$tests"
ls -la "$OUT"

# What the device tool carries to a GPU machine (at most 64 MiB with the working tree):
# the three binaries, xz-compressed (tools/gpu-check.sh unpacks them).
step "compressed copies for the GPU machine in $OUT/../gpu"
carry="$(dirname "$OUT")/gpu"
mkdir -p "$carry"
for b in verifier-node tandem cuda-tests; do
    xz -T0 -6 -c "$OUT/$b" > "$carry/$b.xz"
done
ls -la "$carry"
echo "needs on the GPU machine: $(objdump -p "$OUT/verifier-node" | awk '/NEEDED/ {print $2}' | tr '\n' ' ')"
