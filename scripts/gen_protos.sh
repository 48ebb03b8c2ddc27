#!/usr/bin/env bash
# Regenerates the committed protobuf/gRPC modules beside the .proto files.
# Usage: scripts/gen_protos.sh [OUT_DIR]   (default: proto, i.e. in place)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-proto}"
mkdir -p "$out"
python -m grpc_tools.protoc -I proto \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  proto/veclink/v1/*.proto
