#!/usr/bin/env bash
# Local stand-ins for the three base images docker-compose.yml and the Dockerfiles use,
# built from Debian bookworm packages, for machines that reach no image registry
# (this sandbox, its CI). A machine that can pull images does not need this step.
#
#   deploy/base-images.sh            # needs root, debootstrap, and a running Docker engine
#
# Each image is `debootstrap --variant=minbase bookworm` plus a few packages, then
# `docker import`ed under the exact name the files use, so that nothing else changes:
#
#   python:3.11-slim-bookworm   python3 (3.11, as in the official tag), python3-venv, pip
#   redis:7.2-alpine            Debian's redis-server (7.0) and redis-cli
#   nginx:1.28-alpine           Debian's nginx (1.22), gettext-base (envsubst), wget, and
#                               an entrypoint that renders /etc/nginx/templates/*.template
#                               into /etc/nginx/conf.d/ like the official image does
#                               (`docker import` cannot set STOPSIGNAL: compose sets
#                               SIGQUIT, the official image's, for a graceful stop)
#
# The versions differ from the official tags for Redis and nginx; every stand-in carries
# the label org.botify.base=debian-bookworm, and deploy/nginx.conf works on nginx 1.22.
# An image already present with the same recipe (label org.botify.recipe) is reused (a few ms): the
# images live in the engine's data root, which compose-test keeps across runs.
# The Debian mirror is the one apt uses on this machine (override: BOTIFY_DEBIAN_MIRROR).
set -euo pipefail

DOCKER=${DOCKER:-docker}
CACHE=${BOTIFY_BASE_CACHE:-/var/lib/botify-docker/base}
SUITE=bookworm
HERE=$(cd "$(dirname "$0")" && pwd)

log() { printf '[base-images %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

mirror() {
  if [ -n "${BOTIFY_DEBIAN_MIRROR:-}" ]; then echo "$BOTIFY_DEBIAN_MIRROR"; return; fi
  local m=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
    m=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$m" ] || { echo "no Debian mirror found in apt's sources; set BOTIFY_DEBIAN_MIRROR" >&2; exit 1; }
  echo "$m"
}

have_image() {  # tag, recipe -> 0 when present with this recipe
  [ "$($DOCKER image inspect -f '{{index .Config.Labels "org.botify.recipe"}}' "$1" 2>/dev/null)" = "$2" ]
}

# name, tag, packages, then `docker import --change` lines; a hook `customize_<name>` runs in the rootfs
build_one() {
  local name=$1 tag=$2 pkgs=$3; shift 3
  # The recipe: everything that makes this image (its packages, changes and hook).
  local recipe
  recipe=$(printf '%s\n' "$SUITE" "$name" "$tag" "$pkgs" "$@" "$(declare -f "customize_$name")" \
           | sha256sum | cut -c1-16)
  if have_image "$tag" "$recipe"; then log "$tag: cached"; return; fi
  local t0=$SECONDS root="$CACHE/rootfs-$name"
  # One package cache per image: the three debootstraps run at the same time.
  rm -rf "$root"; mkdir -p "$CACHE/debs-$name" "$root"
  log "$tag: debootstrap $SUITE + $pkgs"
  # DPKG_FORCE=unsafe-io: dpkg in the chroot skips its fsync()s (a throwaway rootfs).
  DPKG_FORCE=unsafe-io debootstrap --variant=minbase --cache-dir="$CACHE/debs-$name" --include="$pkgs" \
    "$SUITE" "$root" "$MIRROR" >"$CACHE/debootstrap-$name.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap-$name.log" >&2; exit 1; }
  "customize_$name" "$root"
  # slim: no apt lists, docs or caches in the image
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
         "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/tmp/* "$root"/var/log/*.log
  local changes=(--change "LABEL org.botify.base=debian-$SUITE" --change "LABEL org.botify.recipe=$recipe"
                 --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                 --change "ENV LANG=C.UTF-8")
  local c
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$root" --numeric-owner -c . | $DOCKER import "${changes[@]}" - "$tag" >/dev/null
  rm -rf "$root"
  log "$tag: imported in $((SECONDS - t0)) s"
}

customize_python() {
  # The official image has `python` and `pip` on PATH.
  ln -sf python3 "$1/usr/bin/python"
}

customize_redis() {
  # As in the official image: /data belongs to the redis user (a tmpfs there copies it).
  mkdir -p "$1/data"
  chroot "$1" chown redis:redis /data
}

customize_nginx() {
  local root=$1
  rm -f "$root/etc/nginx/sites-enabled/default"
  mkdir -p "$root/etc/nginx/templates" "$root/docker-entrypoint.d"
  # Log to the container's stdout/stderr, as the official image does.
  ln -sf /dev/stdout "$root/var/log/nginx/access.log"
  ln -sf /dev/stderr "$root/var/log/nginx/error.log"
  cat >"$root/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# The official nginx image's template contract: /etc/nginx/templates/X.template is
# rendered with envsubst (only variables set in the environment) into /etc/nginx/conf.d/X.
set -eu
if [ "${1:-}" = nginx ]; then
  for t in /etc/nginx/templates/*.template; do
    [ -f "$t" ] || continue
    out="/etc/nginx/conf.d/$(basename "$t" .template)"
    vars=$(env | cut -d= -f1 | sed 's/^/$/' | tr '\n' ' ')
    envsubst "$vars" <"$t" >"$out"
    echo "docker-entrypoint.sh: rendered $t -> $out"
  done
fi
exec "$@"
EOF
  chmod 0755 "$root/docker-entrypoint.sh"
}

MIRROR=$(mirror)
command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 1; }
mkdir -p "$CACHE"
# The three in parallel (mostly download and dpkg waits): about the time of the slowest.
pids=()
build_one python python:3.11-slim-bookworm python3,python3-venv,python3-pip,ca-certificates \
  'CMD ["python3"]' &
pids+=($!)
build_one redis redis:7.2-alpine redis-server,redis-tools \
  'WORKDIR /data' 'EXPOSE 6379' 'CMD ["redis-server"]' &
pids+=($!)
build_one nginx nginx:1.28-alpine nginx,gettext-base,wget \
  'ENTRYPOINT ["/docker-entrypoint.sh"]' 'EXPOSE 80' \
  'CMD ["nginx", "-g", "daemon off;"]' &
pids+=($!)
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
exit $rc
