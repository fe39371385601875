#!/usr/bin/env bash
# Builds gantry's test application image(s): gantry-testapp:TAG for each TAG given.
#
#   testapp/build.sh v1 v2
#   GANTRY_TEST_LABEL=gantry.test-run=abc testapp/build.sh v1    # extra label(s) on every image
#
# Steps: a static (crt-static) release build of examples/testapp.rs for
# x86_64-unknown-linux-gnu, then one `docker build` per TAG from a temporary context holding
# only the Dockerfile and the binary. Every TAG gets the same binary; the VERSION it reports
# comes from the container's environment (docker run -e VERSION=v2), not from the image.
# Each image also carries the label gantry.testapp.tag=TAG, so different tags are different
# image IDs (as different releases would be) while sharing the binary layer.
#
# Environment:
#   GANTRY_TEST_LABEL  one or more key=value labels, separated by whitespace
#   CARGO              cargo to use (default: cargo)
#   TESTAPP_SKIP_CARGO 1: do not run cargo, package the binary built before
#   DOCKER             docker CLI to use (default: docker)
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 TAG [TAG...]   (builds gantry-testapp:TAG)" >&2
    exit 64
fi
for tag in "$@"; do
    if ! [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
        echo "testapp/build.sh: invalid image tag: '$tag'" >&2
        exit 64
    fi
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cargo="${CARGO:-cargo}"
docker="${DOCKER:-docker}"
target=x86_64-unknown-linux-gnu

cd "$repo"
# The static build: testapp/Cargo.toml (signal-hook only, builds in seconds), its own
# target directory, so the host build's flags are untouched.
# CARGO_ENCODED_RUSTFLAGS would override RUSTFLAGS; drop it so the crt-static flag applies.
# TESTAPP_SKIP_CARGO=1 reuses the binary already built (the test helpers set it after their
# first build in a process, so a rebuild of the image does not rebuild the crate).
if [ "${TESTAPP_SKIP_CARGO:-}" != 1 ]; then
    unset CARGO_ENCODED_RUSTFLAGS
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        "$cargo" build --release --manifest-path testapp/Cargo.toml --target "$target" \
        --target-dir testapp/target >&2
fi

bin="$repo/testapp/target/$target/release/testapp"
if [ ! -x "$bin" ]; then
    echo "testapp/build.sh: built binary not found at $bin" >&2
    exit 1
fi
if command -v file >/dev/null 2>&1 && file -L "$bin" | grep -q 'dynamically linked'; then
    echo "testapp/build.sh: $bin is dynamically linked; it cannot run FROM scratch" >&2
    exit 1
fi

ctx="$(mktemp -d "${TMPDIR:-/tmp}/gantry-testapp.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
cp "$here/Dockerfile" "$ctx/Dockerfile"
# Debug info is of no use in the image: strip the copy when strip is there (6 MB -> ~1 MB).
if command -v strip >/dev/null 2>&1; then
    strip -o "$ctx/testapp" "$bin"
else
    cp "$bin" "$ctx/testapp"
fi

# BuildKit needs the buildx plugin; without it, use the classic builder (enough FROM scratch).
if ! "$docker" buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

labels=(--label "org.opencontainers.image.title=gantry-testapp"
        --label "gantry.testapp=1")
for l in ${GANTRY_TEST_LABEL:-}; do
    labels+=(--label "$l")
done

for tag in "$@"; do
    "$docker" build --quiet "${labels[@]}" --label "gantry.testapp.tag=$tag" \
        -t "gantry-testapp:$tag" "$ctx" >/dev/null
    echo "gantry-testapp:$tag $("$docker" image inspect --format '{{.Id}}' "gantry-testapp:$tag")"
done
