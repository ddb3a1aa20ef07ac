#!/usr/bin/env bash
# Fetches the JavaScript libraries that BertViz's view scripts expect (require.js, d3, jQuery) from
# the npm registry into attn_plugins/integrations/_assets/ (gitignored), so that exported pages can
# inline them and work with no network. Run once at set-up time; safe to run again (files already
# present with the right version are kept). Nothing is ever fetched when a page is viewed.
#
# BertViz 1.4.1's templates name require.js 2.3.6, d3 5.7.0 and jQuery 2.0.0; jQuery 2.0.0 was
# never published to npm, so the last 2.x release (2.2.4, same API) stands in for it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${ATTN_PLUGINS_ASSETS_DIR:-attn_plugins/integrations/_assets}
# name  npm-spec  file-inside-the-package
ASSETS=(
  "require.js requirejs@2.3.6 require.js"
  "d3.min.js d3@5.7.0 dist/d3.min.js"
  "jquery.min.js jquery@2.2.4 dist/jquery.min.js"
)
if ! command -v npm >/dev/null 2>&1; then
  echo "fetch_js_assets: npm is not installed (apt-get install npm); it is needed once to fetch the" >&2
  echo "JavaScript libraries that exported BertViz pages inline" >&2
  exit 1
fi
mkdir -p "$DEST"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
manifest="{"
sep=""
for entry in "${ASSETS[@]}"; do
  read -r name spec inner <<<"$entry"
  if [ -s "$DEST/$name" ] && [ -s "$DEST/$name.version" ] && [ "$(cat "$DEST/$name.version")" = "$spec" ]; then
    :
  else
    # npm checks the tarball against the registry's integrity hash.
    if ! tarball=$(cd "$TMP" && npm pack --loglevel=error --ignore-scripts "$spec" 2>"$TMP/npm.log" | tail -n 1) \
        || [ ! -s "$TMP/$tarball" ]; then
      echo "fetch_js_assets: npm pack $spec failed:" >&2
      cat "$TMP/npm.log" >&2
      exit 1
    fi
    tar -xzf "$TMP/$tarball" -C "$TMP" "package/$inner"
    cp "$TMP/package/$inner" "$DEST/$name.tmp"
    mv "$DEST/$name.tmp" "$DEST/$name"
    printf '%s' "$spec" >"$DEST/$name.version"
    rm -rf "$TMP/package"
  fi
  sha=$(sha256sum "$DEST/$name" | cut -d' ' -f1)
  manifest="$manifest$sep\"$name\": {\"package\": \"$spec\", \"sha256\": \"$sha\"}"
  sep=", "
done
printf '%s}\n' "$manifest" >"$DEST/manifest.json"
echo "fetch_js_assets: $(ls "$DEST" | grep -vc '\.version$\|manifest') libraries in $DEST"
