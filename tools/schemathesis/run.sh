#!/usr/bin/env bash
# Runs schemathesis against the config API served locally from
# api/openapi.yaml: weir-api -memory on a free port, stopped afterwards.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
tools/venv.sh schemathesis tools/schemathesis/requirements.txt
mkdir -p bin
go build -o bin/weir-api ./cmd/weir-api
port="${API_FUZZ_PORT:-18080}"
bin/weir-api -memory -addr "127.0.0.1:$port" 2>.venv/schemathesis/weir-api.log &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
	curl -fsS -o /dev/null "http://127.0.0.1:$port/jobs" 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || { echo "weir-api did not start; its log:" >&2; cat .venv/schemathesis/weir-api.log >&2; exit 1; }
	sleep 0.1
done
.venv/schemathesis/bin/schemathesis --config-file tools/schemathesis/schemathesis.toml \
	run api/openapi.yaml --url "http://127.0.0.1:$port" --checks all \
	--phases coverage,fuzzing,stateful --seed "${API_FUZZ_SEED:-1}" --max-time "${API_FUZZ_MAX_TIME:-30}" --no-color
