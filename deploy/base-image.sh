#!/usr/bin/env bash
# Builds the local base image the Coffer image is built FROM, without any
# container registry: a minimal Debian bookworm tree from Debian's package
# mirror (debootstrap), imported with `docker import`.
#
# The result is tagged coffer-base:bookworm-<recipe hash> and is only built
# when that tag is missing, so repeated test runs cost nothing here. A fresh
# engine (CI) pays the debootstrap once (~1-3 min, mostly download).
#
# Usage: deploy/base-image.sh            # build if missing, print the tag
#        FORCE=1 deploy/base-image.sh    # rebuild
set -euo pipefail

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What the runtime image needs beyond minbase: CA roots for outbound TLS,
# curl for the HEALTHCHECK, tini as PID 1, softhsm2 so the HSM tier can be
# tried in the image (nothing loads it unless configured), and adduser for
# installing the .deb in it (deploy/deb-test.sh).
include=ca-certificates,curl,softhsm2,tini,adduser
# The tag names the recipe, so a changed list builds a new base.
recipe=$(printf '%s' "bookworm minbase $include" | sha256sum | cut -c1-8)
tag=${COFFER_BASE:-coffer-base:bookworm-$recipe}

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
