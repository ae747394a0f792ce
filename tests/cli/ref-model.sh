# tests/cli/ref-model.sh — the PyTorch reference's own self-checks (gradcheck, a naive loop
# implementation, packing, safetensors I/O, AdamW by hand): an oracle is only as good as these.
cd "$(dirname "$0")/../.." && exec /usr/bin/python3 tests/oracle/test_ref_model.py
