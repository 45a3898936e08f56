#!/bin/sh
# dist.sh DIR: builds latch for linux/amd64, linux/arm64 and darwin/arm64
# into DIR as latch-OS-ARCH, through scripts/build.sh, and writes their
# SHA-256 sums to DIR/SHA256SUMS. The coordinator serves DIR (--dist-dir)
# to the install script.
set -eu
dir=${1:?usage: scripts/dist.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
for target in linux/amd64 linux/arm64 darwin/arm64; do
	os=${target%/*}
	arch=${target#*/}
	echo "building $dir/latch-$os-$arch"
	GOOS=$os GOARCH=$arch "$here/build.sh" "$dir/latch-$os-$arch"
done
cd "$dir"
sha256sum latch-linux-amd64 latch-linux-arm64 latch-darwin-arm64 >SHA256SUMS.new
mv -f SHA256SUMS.new SHA256SUMS
