#!/bin/sh
# Static release binaries and Debian packages, one command:
#   packaging/release.sh [OUT_DIR]          (default dist/)
# For each architecture, OUT_DIR/ARCH/{sesamed,sesame} (static musl, no
# dependency but the kernel) and OUT_DIR/sesame_VERSION_DEBARCH.deb, then
# SHA256SUMS. Architectures: x86_64 (amd64) and aarch64 (arm64); armv7
# (armhf) too when its Rust target can be installed (rustup has no
# armv7-unknown-linux-musleabihf standard library for every release).
# Cross targets link with rust-lld from the Rust toolchain: no C
# cross-compiler is needed (no dependency builds C code).
# Needs rustup (for `rustup target add`), dpkg-deb and, for the man pages,
# a host that can run one of the binaries it built.
# CARGO_TARGET_DIR is honoured.
set -eu
cd "$(dirname "$0")/.."
out=${1:-dist}
target_dir=${CARGO_TARGET_DIR:-target}
rm -rf "$out"
mkdir -p "$out"
host=$(uname -m)
docs=
built=
for spec in x86_64-unknown-linux-musl:amd64:x86_64 \
            aarch64-unknown-linux-musl:arm64:aarch64 \
            armv7-unknown-linux-musleabihf:armhf:armv7; do
    triple=${spec%%:*} rest=${spec#*:}
    debarch=${rest%%:*} arch=${rest#*:}
    if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
        if ! rustup target add "$triple" >/dev/null 2>&1; then
            case $arch in
                armv7) echo "release: skipping $arch: rustup cannot install $triple" >&2; continue ;;
                *) echo "release: rustup cannot install $triple" >&2; exit 1 ;;
            esac
        fi
    fi
    upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    linker_var="CARGO_TARGET_${upper}_LINKER"
    if [ "$arch" != "$host" ]; then
        export "$linker_var=rust-lld"
    fi
    echo "release: building $triple" >&2
    cargo build --release --locked --target "$triple" -p sesame --bins >&2
    mkdir -p "$out/$arch"
    cp "$target_dir/$triple/release/sesamed" "$target_dir/$triple/release/sesame" "$out/$arch/"
    if [ "$arch" = "$host" ] && [ -z "$docs" ]; then
        docs=$out/.docs
        for b in sesamed sesame; do SESAME_GENERATE_DOCS="$docs" "$out/$arch/$b" >/dev/null; done
    fi
    built="$built $arch:$debarch"
done
[ -n "$docs" ] || { echo "release: no binary runs on this host ($host) to write the man pages" >&2; exit 1; }
for pair in $built; do
    arch=${pair%%:*} debarch=${pair#*:}
    packaging/build-deb.sh "$out/$arch" "$debarch" "$out" "$docs" >/dev/null
done
rm -rf "$docs"
(cd "$out" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | sort | xargs sha256sum >SHA256SUMS)
echo "release: $out:" >&2
(cd "$out" && ls -l ./*.deb ./*/sesame*) >&2
echo "$out"
