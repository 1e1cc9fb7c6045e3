#!/usr/bin/env bash
# Wheelhouses for offline image builds: botify/.wheels and sim/.wheels, filled on the host.
#
#   deploy/wheelhouse.sh
#
# The Dockerfiles install from a context's .wheels/ with `pip --no-index` when it holds
# wheels, so the build itself needs no package index (the air-gapped pattern). The wheels
# are built for the host's CPython, which must be the images' minor version (3.11: the
# python:3.11-slim-bookworm image, or Debian bookworm's python3 in the local stand-in).
# Only the service's runtime dependencies go into botify/.wheels (no offline/train/spark
# extras), plus setuptools, the build backend pip needs to install the package itself.
# Downloads go through pip's own cache; the wheels are kept under BOTIFY_WHEEL_CACHE
# (default /var/lib/botify-docker/wheels) and copied into the contexts (both gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CACHE=${BOTIFY_WHEEL_CACHE:-/var/lib/botify-docker/wheels}
want=3.11
# Markers are resolved for the host's CPython by pip; deploy/wheel_closure.py adds what
# the images' may need besides: Debian bookworm's 3.11.2 (the local stand-in) is older
# than the official image's 3.11.x.
IMAGE_PYTHON=${BOTIFY_IMAGE_PYTHON:-3.11.2}
have=$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$have" = "$want" ] || { echo "wheelhouse: $PY is $have, the images run $want" >&2; exit 1; }
for pkg in botify sim; do
  stamp="$CACHE/$pkg/.stamp"
  key=$(cat "$pkg/pyproject.toml" deploy/wheel_closure.py | sha256sum | cut -c1-16)-$IMAGE_PYTHON
  if [ "$(cat "$stamp" 2>/dev/null)" != "$key" ]; then
    rm -rf "$CACHE/$pkg"; mkdir -p "$CACHE/$pkg"
    # Build the package's own wheel too (proves the wheelhouse resolves), then drop it:
    # the image installs the package from its source in the context.
    $PY -m pip wheel -q --disable-pip-version-check -w "$CACHE/$pkg" "./$pkg" "setuptools>=77"
    rm -f "$CACHE/$pkg"/botify-[0-9]*.whl "$CACHE/$pkg"/botify_sim-*.whl
    $PY deploy/wheel_closure.py "$CACHE/$pkg" "$IMAGE_PYTHON"
    echo "$key" >"$stamp"
  fi
  rm -rf "$pkg/.wheels"; mkdir -p "$pkg/.wheels"
  cp "$CACHE/$pkg"/*.whl "$pkg/.wheels/"
  echo "wheelhouse: $pkg/.wheels: $(ls "$pkg/.wheels" | wc -l) wheels"
done
