#!/usr/bin/env bash
# Writes the reference fixture for the candle model's parity test:
#   models/tests/fixtures/tiny-target-reference.json
# from HF transformers + torch (CPU) run on the shipped tiny target.
#
# Usage: tools/parity.sh [MODEL_DIR] [OUT_JSON]
# Installs transformers, torch and safetensors into tools/.venv on first use (from the
# Python package registry; a few GB, as torch wheels are large). Not run by CI: the
# fixture it writes is committed and checked by `cargo test`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:-$root/models/assets/tiny-target}"
out="${2:-$root/models/tests/fixtures/tiny-target-reference.json}"
venv="${TANDEM_PARITY_VENV:-$root/tools/.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch transformers safetensors
fi
mkdir -p "$(dirname "$out")"
"$venv/bin/python" "$root/tools/parity_reference.py" "$model" "$out"
"$venv/bin/python" "$root/tools/parity_checkpoints.py" "$(dirname "$out")"
