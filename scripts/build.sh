#!/bin/sh
# build.sh OUT: builds the static latch binary (CGO_ENABLED=0) for $GOOS and
# $GOARCH (default: this machine) with the version stamped in. The Makefile
# (make build, make dist) and the Dockerfile both build through this
# script, so CI builds the binary exactly as the image does.
#
# VERSION defaults to `git describe`, or "dev" outside a git checkout.
set -eu
out=${1:?usage: scripts/build.sh OUT}
case $out in
/*) ;;
*) out=$(pwd)/$out ;;
esac
cd "$(dirname "$0")/.."
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
CGO_ENABLED=0 exec "${GO:-go}" build -trimpath \
	-ldflags "-s -w -X github.com/latchnet/latch/cli.Version=$version" \
	-o "$out" ./cmd/latch
