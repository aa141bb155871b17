#!/usr/bin/env bash
# Builds the Coffer node image here, with no registry: the base comes from
# deploy/base-image.sh (debootstrap + docker import, cached under a stable
# tag), the binary from this checkout.
#
#   deploy/image.sh [TAG]                 # default coffer:dev; release build
#   COFFER_BIN=target/debug/coffer deploy/image.sh coffer:test   # any binary
#
# Prints the tag and the image size.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-coffer:dev}
target=${CARGO_TARGET_DIR:-target}
if [[ -z "${COFFER_BIN:-}" ]]; then
  cargo build --release -p coffer --bin coffer
  COFFER_BIN=$target/release/coffer
fi
[[ -x "$COFFER_BIN" ]] || { echo "image.sh: no binary at $COFFER_BIN" >&2; exit 1; }

base=$(deploy/base-image.sh)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp deploy/Dockerfile "$ctx/"
# COFFER_STRIP=1 drops debug info (the tests' debug build: 100 MB → 40 MB,
# which the engine copies faster); by default the image keeps the line
# tables that make backtraces name file and line.
if [[ ${COFFER_STRIP:-0} == 1 ]]; then
  strip -o "$ctx/coffer" "$COFFER_BIN"
else
  cp "$COFFER_BIN" "$ctx/coffer"
fi
chmod 0755 "$ctx/coffer"
start=$(date +%s)
old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
# The engine here has no BuildKit (buildx); the classic builder does all
# this Dockerfile needs. Its output only matters when it fails.
build=${COFFER_BUILD:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
DOCKER_BUILDKIT=0 docker build --build-arg BASE="$base" --build-arg COFFER_BUILD="$build" \
  -t "$tag" "$ctx" \
  >"$ctx/build.log" 2>&1 || { cat "$ctx/build.log" >&2; exit 1; }
docker run --rm --entrypoint /usr/local/bin/coffer "$tag" --version >/dev/null \
  || { echo "image.sh: the binary does not run in $tag" >&2; exit 1; }
new=$(docker image inspect -f '{{.Id}}' "$tag")
# The image this tag named before, if nothing else uses it now.
[[ -n $old && $old != "$new" ]] && docker rmi "$old" >/dev/null 2>&1 || true
size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "image.sh: $tag from $base in $(( $(date +%s) - start ))s," \
  "$(( size / 1000000 )) MB (binary $(( $(stat -c %s "$ctx/coffer") / 1000000 )) MB)" >&2
echo "$tag"
