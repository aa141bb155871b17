#!/usr/bin/env bash
# Builds the local base image the Coffer image is built FROM, without any
# container registry: a minimal Debian bookworm tree from Debian's package
# mirror (debootstrap), imported with `docker import`.
#
# The result is tagged ${COFFER_BASE:-coffer-base:bookworm} and is only built
# when that tag is missing, so repeated test runs cost nothing here. A fresh
# engine (CI) pays the debootstrap once (~1-3 min, mostly download).
#
# Usage: deploy/base-image.sh            # build if missing, print the tag
#        FORCE=1 deploy/base-image.sh    # rebuild
set -euo pipefail

tag=${COFFER_BASE:-coffer-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What the runtime image needs beyond minbase: CA roots for outbound TLS,
# curl for the HEALTHCHECK, softhsm2 so the HSM tier can be tried in the
# image (optional at run time: nothing loads it unless configured).
include=ca-certificates,curl,softhsm2,tini

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

command -v debootstrap >/dev/null || {
  echo "base-image: debootstrap missing (apt-get install debootstrap)" >&2
  exit 1
}

root=$(mktemp -d /var/tmp/coffer-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
echo "base-image: debootstrap bookworm into $root (include: $include)" >&2
debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" \
  >"$root.log" 2>&1 || { tail -30 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# Trim what a server image never uses: apt lists, docs, man pages, locales.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
  "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "base-image: $tag built in $(( $(date +%s) - start ))s," \
  "$(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')" >&2
echo "$tag"
