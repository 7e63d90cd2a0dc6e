#!/usr/bin/env bash
# Fetch the JavaScript/CSS packages the Solara dashboard loads from a CDN at run time, from the npm
# registry (`npm pack`), into a git-ignored folder laid out as <dir>/<npm-name>@<version>/...
# The dashboard points SOLARA_ASSETS_PROXY_CACHE_DIR at it, so the page works offline.
#
#   scripts/dashboard_assets.sh [DIR]      (default: $RECLOOP_SOLARA_ASSETS or .cache/solara-assets)
#
# Idempotent: a package already unpacked (marked by .recloop-complete) is skipped; a half-done
# one is fetched again. The versions are hard-coded in solara 1.64.1's templates (with
# ipyvuetify<3): re-derive them when bumping solara (grep the solara package for '@<version>/').
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  "@widgetti/solara-vuetify-app@10.1.1"
  "requirejs@2.3.6"
  "font-awesome@4.5.0"
  "@widgetti/vue-grid-layout@2.3.13-alpha.2"
)

dest="${1:-${RECLOOP_SOLARA_ASSETS:-.cache/solara-assets}}"
if ! command -v npm >/dev/null 2>&1; then
  echo "error: npm is needed to fetch the dashboard's assets (Debian: apt-get install -y npm)" >&2
  exit 2
fi
mkdir -p "$dest"

for spec in "${PACKAGES[@]}"; do
  target="$dest/$spec"
  if [ -f "$target/.recloop-complete" ]; then
    continue
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "fetching $spec" >&2
  npm pack --silent --pack-destination "$tmp" "$spec" >/dev/null
  mkdir -p "$tmp/unpacked"
  tar -xzf "$tmp"/*.tgz -C "$tmp/unpacked" --strip-components=1 --no-same-owner
  touch "$tmp/unpacked/.recloop-complete"
  mkdir -p "$(dirname "$target")"
  rm -rf "$target"
  mv "$tmp/unpacked" "$target"
  rm -rf "$tmp"
  trap - EXIT
done
echo "dashboard assets ready in $dest" >&2
