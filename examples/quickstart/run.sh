#!/usr/bin/env bash
# The quickstart, end to end, on this machine's Docker engine (no registry needed):
# build the test app image, plan, apply v1, roll to v2 batch by batch, show status and
# history, roll back in seconds, then remove everything it created.
#
#   examples/quickstart/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
cd "$repo"
# GANTRY: a gantry binary to use (the tests pass theirs); otherwise build one.
gantry="${GANTRY:-}"
if [ -z "$gantry" ]; then
    cargo build -q
    gantry="$repo/target/debug/gantry"
fi
trap 'rm -rf "$work"' EXIT

echo "== building the test application image (FROM scratch, static binary)"
testapp/build.sh v1 v2 >/dev/null 2>&1
cp examples/quickstart/gantry.toml "$work/gantry.toml"
cd "$work"

echo "== gantry plan"
"$gantry" plan
echo "== gantry apply (v1)"
"$gantry" apply --yes --progress plain 2>&1 | grep -v "^ " | tail -n 6
echo "== roll to v2, batch by batch"
sed -i 's/gantry-testapp:v1/gantry-testapp:v2/' gantry.toml
"$gantry" apply --yes --progress plain 2>&1 | grep -E "^20|Apply"
echo "== gantry status"
"$gantry" status
echo "== gantry rollback (the kept v1 containers start again)"
"$gantry" rollback --yes --progress plain 2>&1 | grep -E "^20|Rollback"
echo "== gantry history"
"$gantry" history
echo "== cleaning up: a config without services destroys them"
printf '[project]\nname = "quickstart"\nkeep_previous = 0\n' > gantry.toml
"$gantry" apply --yes --progress plain >/dev/null 2>&1
"$gantry" prune
echo "quickstart done"
