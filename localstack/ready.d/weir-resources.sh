#!/bin/bash
# LocalStack's ready hook: creates the stack's data resources from
# template.yaml with weir-resources, the same program and template `make
# run` uses on the embedded emulator, so both have the same resources.
set -euo pipefail
export AWS_ENDPOINT_URL=http://localhost:4566
export AWS_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
stack="${WEIR_STACK:-weir-local}"
out=/opt/weir/out
mkdir -p "$out"
/opt/weir/weir-resources create --stack "$stack" --template /opt/weir/template.yaml >"$out/weir.env.tmp"
# Seen from the host, the queues are at the published port of 127.0.0.1,
# not at the container's name for itself.
host="http://127.0.0.1:${WEIR_HOST_PORT:-4566}"
sed -e "s#http://localhost:4566#$host#g" -e "s#http://localhost.localstack.cloud:4566#$host#g" "$out/weir.env.tmp" >"$out/weir.env"
rm -f "$out/weir.env.tmp"
echo "weir: stack $stack created; its environment is in .localstack/weir.env"
