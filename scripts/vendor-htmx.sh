#!/bin/sh
# Vendor htmx from the npm registry into static/vendor/ (no build step, no node_modules).
# Usage: scripts/vendor-htmx.sh [VERSION]   (default: the version below)
# Then update the <script src> in templates/base.html and static/vendor/README.md.
set -eu
VERSION="${1:-4.0.1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm pack --silent "htmx.org@$VERSION" >/dev/null
tar xzf "htmx.org-$VERSION.tgz"
cp package/dist/htmx.min.js "$ROOT/static/vendor/htmx-$VERSION.min.js"
cp package/LICENSE "$ROOT/static/vendor/htmx-LICENSE.txt"
echo "static/vendor/htmx-$VERSION.min.js ($(wc -c < "$ROOT/static/vendor/htmx-$VERSION.min.js") bytes)"
