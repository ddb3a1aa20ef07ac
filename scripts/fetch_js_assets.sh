#!/usr/bin/env bash
# Maintainers only: updates the JavaScript libraries vendored in the package
# (attn_plugins/integrations/static/vendor/) from the npm registry, with their licence texts, and
# rewrites the SHA-256 manifest that tests/release/test_vendored_assets.py checks. Users never run
# this: the files are committed and ship inside the wheel and the sdist, so exported pages work
# offline on a fresh install. Run it after changing a version below, then commit the folder.
#
# BertViz 1.4.1's templates name require.js 2.3.6, d3 5.7.0 and jQuery 2.0.0; jQuery 2.0.0 was
# never published to npm, so the last 2.x release (2.2.4, same API) stands in for it.
# (Also update LIBRARIES in attn_plugins/integrations/assets.py when a version changes.)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=attn_plugins/integrations/static/vendor
# name  npm-spec  file-inside-the-package  licence(SPDX)  licence-file-inside-the-package(- = none shipped)
ASSETS=(
  "require.js requirejs@2.3.6 require.js MIT -"
  "d3.min.js d3@5.7.0 dist/d3.min.js BSD-3-Clause LICENSE"
  "jquery.min.js jquery@2.2.4 dist/jquery.min.js MIT LICENSE.txt"
)
if ! command -v npm >/dev/null 2>&1; then
  echo "fetch_js_assets: npm is not installed (apt-get install npm)" >&2
  exit 1
fi
mkdir -p "$DEST/licenses"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
entries=()
for entry in "${ASSETS[@]}"; do
  read -r name spec inner spdx licfile <<<"$entry"
  pkg=${spec%@*}
  # npm checks the tarball against the registry's integrity hash.
  if ! tarball=$(cd "$TMP" && npm pack --loglevel=error --ignore-scripts "$spec" 2>"$TMP/npm.log" | tail -n 1) \
      || [ ! -s "$TMP/$tarball" ]; then
    echo "fetch_js_assets: npm pack $spec failed:" >&2
    cat "$TMP/npm.log" >&2
    exit 1
  fi
  rm -rf "$TMP/package"
  tar -xzf "$TMP/$tarball" -C "$TMP"
  cp "$TMP/package/$inner" "$DEST/$name"
  if [ "$licfile" != "-" ]; then
    cp "$TMP/package/$licfile" "$DEST/licenses/$pkg.txt"
  elif [ ! -s "$DEST/licenses/$pkg.txt" ]; then
    # requirejs's npm package ships no licence file; its header names the MIT licence at
    # https://github.com/requirejs/requirejs/blob/master/LICENSE, which a maintainer copies here once.
    echo "fetch_js_assets: $spec ships no licence file: add $DEST/licenses/$pkg.txt ($spdx) by hand" >&2
    exit 1
  fi
  entries+=("$name $spec $spdx licenses/$pkg.txt")
done
# manifest.json: every vendored file with its npm package, licence and SHA-256
python3 - "$DEST" "${entries[@]}" <<'PY'
import hashlib, json, pathlib, sys
dest = pathlib.Path(sys.argv[1])
digest = lambda p: hashlib.sha256((dest / p).read_bytes()).hexdigest()
manifest = {}
for entry in sys.argv[2:]:
    name, spec, spdx, licence = entry.split()
    manifest[name] = {"package": spec, "sha256": digest(name), "license": spdx,
                      "license_file": licence, "license_sha256": digest(licence)}
(dest / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
PY
echo "fetch_js_assets: ${#entries[@]} libraries and their licences in $DEST; commit that folder"
