#!/usr/bin/env bash
# Tandem against llama.cpp on the edge's real workload, same GGUF file, same threads:
# SmolLM2-135M-Instruct Q4_1, one decode step and a 5-token verification block after a
# 128-token context, and a 128-token prefill, at 1 and 2 threads.
#
# Usage: tools/bench-smollm2.sh [THREADS...]   (default: 1 2)
# Runs `cargo bench -p tandem-models --bench smollm2` once per thread count
# (RAYON_NUM_THREADS), then llama.cpp through llama-cpp-python (tools/bench_llamacpp.py,
# installed into tools/.venv-llamacpp as by tools/llamacpp-parity.sh), and prints
# tokens/s for both and the ratio Tandem ÷ llama.cpp.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TANDEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem}"
model="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
venv="${TANDEM_LLAMACPP_VENV:-$root/tools/.venv-llamacpp}"
threads=("${@:-1 2}")
read -r -a threads <<<"${threads[*]}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    CMAKE_ARGS="-DGGML_NATIVE=ON" "$venv/bin/pip" install --quiet llama-cpp-python numpy jinja2
fi
cd "$root"
tandem=$(mktemp)
trap 'rm -f "$tandem"' EXIT
for t in "${threads[@]}"; do
    RAYON_NUM_THREADS="$t" cargo bench --quiet -p tandem-models --bench smollm2 -- --noplot 2>/dev/null |
        awk -v t="$t" '/^smollm2_q4_1/ { name = $1 } /thrpt:/ && /elem\/s/ { gsub(/\[|\]/, ""); print t, name, $(NF-3), $(NF-2) }' >>"$tandem"
done
"$venv/bin/python" - "$tandem" "$model" "${threads[@]}" <<'PY'
import json, subprocess, sys
tandem_file, model, threads = sys.argv[1], sys.argv[2], sys.argv[3:]
scale = {"elem/s": 1, "Kelem/s": 1e3, "Melem/s": 1e6}
tandem = {}
for line in open(tandem_file):
    t, name, value, unit = line.split()
    tandem[(int(t), name.rsplit("/", 1)[-1])] = float(value) * scale[unit]
out = subprocess.run([sys.executable, "tools/bench_llamacpp.py", model, *threads],
                     check=True, capture_output=True, text=True).stdout
print(f"{'threads':>7} {'workload':>10} {'Tandem tok/s':>13} {'llama.cpp tok/s':>16} {'ratio':>6}")
for line in out.splitlines():
    r = json.loads(line)
    ours = tandem.get((r["threads"], r["workload"]))
    ratio = f"{ours / r['tokens_per_s']:.2f}" if ours else "-"
    print(f"{r['threads']:>7} {r['workload']:>10} {ours or 0:>13.1f} {r['tokens_per_s']:>16.1f} {ratio:>6}")
PY
