#!/bin/sh
# Builds the Debian package of sesame from already built binaries, with
# dpkg-deb only (no cargo-deb, no debhelper): what it installs is listed
# here, in one place.
#
# Usage: packaging/build-deb.sh BIN_DIR DEB_ARCH OUT_DIR [DOCS_DIR]
#   BIN_DIR   holds sesamed and sesame for DEB_ARCH (stripped here when the
#             host's strip understands them)
#   DEB_ARCH  amd64, arm64, armhf ...
#   OUT_DIR   receives sesame_VERSION_DEB_ARCH.deb (its path is printed last)
#   DOCS_DIR  generated man pages and completions (packaging/gen-docs.sh);
#             generated from BIN_DIR's binaries when left out
# packaging/release.sh calls it for every architecture.
set -eu
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { echo "usage: $0 BIN_DIR DEB_ARCH OUT_DIR [DOCS_DIR]" >&2; exit 2; }
bins=$1 arch=$2 out=$3 docs=${4:-}
for b in sesamed sesame; do
    [ -x "$bins/$b" ] || { echo "build-deb: $bins/$b: no such executable" >&2; exit 1; }
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "build-deb: no version in Cargo.toml" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
if [ -z "$docs" ]; then
    docs=$stage/docs
    for b in sesamed sesame; do
        SESAME_GENERATE_DOCS="$docs" "$bins/$b" >/dev/null
    done
fi

put() { # put MODE SRC DEST
    install -D -m "$1" "$2" "$root/$3"
}
put 755 "$bins/sesamed" usr/bin/sesamed
put 755 "$bins/sesame" usr/bin/sesame
# Binaries ship stripped; a foreign architecture's are stripped by the
# release profile (strip = true) already.
strip --strip-unneeded "$root/usr/bin/sesamed" "$root/usr/bin/sesame" 2>/dev/null || true
put 644 packaging/sesamed.service usr/lib/systemd/system/sesamed.service
put 640 packaging/sesame.toml etc/sesame/sesame.toml
install -d -m 755 "$root/usr/share/man/man1" "$root/usr/share/man/man5" "$root/usr/share/man/man8"
for page in "$docs"/man/*.1 "$docs"/man/*.8 packaging/man/*.5; do
    section=${page##*.}
    gzip -9n <"$page" >"$root/usr/share/man/man$section/$(basename "$page").gz"
done
put 644 "$docs/completions/sesamed.bash" usr/share/bash-completion/completions/sesamed
put 644 "$docs/completions/sesame.bash" usr/share/bash-completion/completions/sesame
put 644 "$docs/completions/_sesamed" usr/share/zsh/vendor-completions/_sesamed
put 644 "$docs/completions/_sesame" usr/share/zsh/vendor-completions/_sesame
put 644 "$docs/completions/sesamed.fish" usr/share/fish/vendor_completions.d/sesamed.fish
put 644 "$docs/completions/sesame.fish" usr/share/fish/vendor_completions.d/sesame.fish
doc=usr/share/doc/sesame
for f in README.md SECURITY.md examples/sesame.toml docs/*.md; do
    put 644 "$f" "$doc/$(basename "$f")"
done
put 644 packaging/debian/copyright "$doc/copyright"

ctl=$root/DEBIAN
install -d -m 755 "$ctl"
for s in postinst prerm postrm; do
    put 755 "packaging/debian/$s" "DEBIAN/$s"
done
echo /etc/sesame/sesame.toml >"$ctl/conffiles"
# Static (musl) binaries need nothing; glibc ones need the libc they link.
# A dynamic binary names its loader (ld-linux-*.so).
if grep -q 'ld-linux' "$root/usr/bin/sesamed"; then
    depends="adduser, libc6 (>= 2.34)"
else
    depends="adduser"
fi
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$ctl/control" <<EOF
Package: sesame
Version: $version
Architecture: $arch
Maintainer: Sesame developers <sesame@example.invalid>
Installed-Size: $size
Depends: $depends
Section: net
Priority: optional
Homepage: https://example.invalid/sesame
Description: port knocking and single packet authorization daemon
 sesamed keeps protected ports closed and opens them for one source
 address, for a limited time, after a secret knock sequence, a rotating
 TOTP sequence or a single authorization packet (fwknop and knockd
 compatible). Grants are nftables elements with kernel timeouts.
 .
 The service runs as the system user sesame with CAP_NET_ADMIN only and is
 installed disabled: write a door in /etc/sesame/sesame.toml, then
 systemctl enable --now sesamed.
EOF
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$ctl/md5sums"
mkdir -p "$out"
deb=$out/sesame_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
