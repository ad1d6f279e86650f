#!/usr/bin/env bash
# Tandem's GPU check: one run, about 10 minutes on one H100/H200, of the binaries
# tools/build-cuda.sh built (dist/cuda/). Writes into $OUT (default gpu-check/) at most
# eight files, each a step's log or result:
#
#   cuda-tests.log   CPU vs GPU logits (tiny pair in f32/bf16/f16; SmolLM2 Q4_1 as stored
#                    and dequantized to bf16), greedy speculative decoding on the GPU equal
#                    to greedy decoding on the GPU (alone and batched; the tiny pair and
#                    SmolLM2 drafting for itself), token trees against their paths
#   bench-1b.md      verifier-node bench on random:llama-1b, bf16, 1–256 sessions, batching
#   bench-8b.md      on and off, raw pass, memory-bound pass (H200: 4 800 GB/s)
#   gpu-profile.tar  tandem run experiments/configs/gpu-profile.toml: a real run with the
#                    8B-shaped target on the GPU, whose rounds.parquet the simulator's
#                    profile_trace fits (commit it under results/gpu-profile/)
#   gpu-check.log    this script's own log: the GPU, the libraries found, each step's time
#
# With the device tool: the working tree travels with what `carry` names, 64 MiB in all,
# and results/ alone is larger, so move it aside for the call and carry the compressed
# binaries (about 46 MB):
#
#     mv results /tmp/results.aside     # back afterwards: mv /tmp/results.aside results
#     run: tools/gpu-check.sh            carry: ["dist/gpu"]
#
# SmolLM2 (the GGUF is 98 MB) cannot travel with them. The SmolLM2 tests run when
# $TANDEM_CACHE holds its file (e.g. carried in two halves by two earlier calls to a warm
# machine, joined with cat); otherwise they are skipped by name, and the log says so.
#
# Usage: tools/gpu-check.sh          env: TANDEM_GPU_BIN (dist/cuda), OUT, BANDWIDTH_GBS
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${TANDEM_GPU_BIN:-dist/cuda}
# Binaries carried compressed (dist/gpu/*.xz, from tools/build-cuda.sh) are unpacked first.
if [ ! -x "$BIN/tandem" ] && [ -e dist/gpu/tandem.xz ]; then
    BIN=$(mktemp -d)
    for b in verifier-node tandem cuda-tests; do
        python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
            "dist/gpu/$b.xz" "$BIN/$b" && chmod +x "$BIN/$b"
    done
fi
OUT=${OUT:-gpu-check}
BANDWIDTH=${BANDWIDTH_GBS:-4800}
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$LOG" >&2; }
failed=0

# The CUDA libraries the binaries link (cuBLAS, cuRAND, NVRTC, the runtime): the GPU
# machine's own nvidia-* Python packages.
libs=$(python3 - <<'PY'
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()] + sys.path)
dirs = {d for r in roots for d in glob.glob(os.path.join(r, "nvidia", "*", "lib")) + glob.glob(os.path.join(r, "nvidia", "*", "*", "lib"))}
print(":".join(sorted(dirs)))
PY
)
# The driver's libcuda.so.1: the loader's own path, or the driver's mounted folder.
export LD_LIBRARY_PATH="$libs:/usr/local/nvidia/lib64:/usr/local/nvidia/lib:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$LOG" 2>&1
missing=$(ldd "$BIN/verifier-node" | grep 'not found')
if [ -n "$missing" ]; then
    log "libraries not found (LD_LIBRARY_PATH=$LD_LIBRARY_PATH):"; echo "$missing" | tee -a "$LOG"
    exit 1
fi
ldd "$BIN/verifier-node" | grep -E 'cu|nvrtc' >>"$LOG"

step() { # NAME LIMIT_S COMMAND...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    log "start $name"
    timeout "$limit" "$@"
    local rc=$?
    log "end $name: rc $rc, $((SECONDS - t0)) s"
    [ $rc -eq 0 ] || failed=1
}

skip=()
smollm2=${TANDEM_CACHE:-$HOME/.cache/tandem}/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -e "$smollm2" ]; then
    log "SmolLM2 tests NOT RUN: $smollm2 is not on this machine"
    skip=(--skip smollm2)
fi
step cuda-tests 150 sh -c "'$BIN/cuda-tests' --test-threads 1 ${skip[*]} >'$OUT/cuda-tests.log' 2>&1"
for shape in 1b 8b; do
    step "bench-$shape" 140 sh -c "'$BIN/verifier-node' bench --model random:llama-$shape --device cuda --dtype bf16 \
        --sessions 1,4,16,64,256 --bandwidth-gbs $BANDWIDTH >'$OUT/bench-$shape.md' 2>&1"
done
runs=$(mktemp -d)
step gpu-profile 140 sh -c "'$BIN/tandem' run experiments/configs/gpu-profile.toml --out '$runs' >>'$LOG' 2>&1"
tar -C "$runs" -cf "$OUT/gpu-profile.tar" . 2>>"$LOG"
log "done: $([ $failed -eq 0 ] && echo 'every step passed' || echo 'a step FAILED (see above)')"
exit $failed
