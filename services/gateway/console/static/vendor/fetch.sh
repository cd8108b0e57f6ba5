#!/usr/bin/env sh
# Vendors the console's front-end libraries from npm at pinned versions (no CDN at run time).
# Run from this folder when upgrading: sh fetch.sh; then commit the files it writes.
set -eu
HTMX=2.0.11
CHARTJS=4.6.1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "htmx.org@$HTMX" "chart.js@$CHARTJS" >/dev/null)
tar -xzf "$work/htmx.org-$HTMX.tgz" -C "$work" package/dist/htmx.min.js package/LICENSE
cp "$work/package/dist/htmx.min.js" htmx.min.js
cp "$work/package/LICENSE" htmx.LICENSE
rm -rf "$work/package"
tar -xzf "$work/chart.js-$CHARTJS.tgz" -C "$work" package/dist/chart.umd.min.js package/LICENSE.md
cp "$work/package/dist/chart.umd.min.js" chart.umd.min.js
cp "$work/package/LICENSE.md" chart.js.LICENSE.md
printf 'htmx.org %s\nchart.js %s\n' "$HTMX" "$CHARTJS" > VERSIONS
