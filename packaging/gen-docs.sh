#!/bin/sh
# Writes man pages and shell completions of sesamed and sesame, generated
# from their clap definitions, into DIR (default target/docs):
#   DIR/man/sesamed.8 DIR/man/sesame.1
#   DIR/completions/{sesamed,sesame}.bash _sesamed _sesame {sesamed,sesame}.fish
# Usage: packaging/gen-docs.sh [DIR] (uses the release binaries in
# ${CARGO_TARGET_DIR:-target}/release, building them if missing).
set -eu
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
dir=${1:-$target/docs}
if [ ! -x "$target/release/sesamed" ] || [ ! -x "$target/release/sesame" ]; then
    cargo build --release -p sesame --bins
fi
for bin in sesamed sesame; do
    SESAME_GENERATE_DOCS="$dir" "$target/release/$bin" >/dev/null
done
echo "docs written to $dir"
