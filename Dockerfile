# The controller image: one static linux/arm64 binary (Fargate runs the
# controller on ARM64, see template.yaml), run as a non-root user, on an
# empty base with only the CA certificates it needs to reach AWS over TLS.
#
#   docker buildx build --platform linux/arm64 -t weir-controller .
#
# docs/deploy.md shows how to push it to the stack's repository.

ARG GO_VERSION=1.26

# The build runs on the builder's own platform and cross-compiles, which is
# fast on x86 builders too (no emulation).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH=arm64
# The package of the controller binary.
ARG MAIN=./cmd/weir-controller
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
	go build -trimpath -ldflags=-s -o /out/weir-controller "$MAIN"

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/weir-controller /weir-controller
# 65532 is the conventional "nonroot" id; the task definition's root file
# system is read-only, so the binary needs no writable directory.
USER 65532:65532
ENTRYPOINT ["/weir-controller"]
