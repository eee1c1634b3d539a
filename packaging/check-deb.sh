#!/bin/sh
# Builds the Debian package with `cargo deb` and checks what it installs:
# unpacks it into a throw-away folder (dpkg-deb -x, no dpkg database
# touched) and verifies the unit, the default config (a conffile), the man
# pages, the completions, the binaries and the maintainer scripts.
# Needs cargo-deb (`cargo install cargo-deb`) and dpkg-deb.
# Usage: packaging/check-deb.sh  (prints the package path and its listing)
set -eu
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
command -v cargo-deb >/dev/null || { echo "check-deb: cargo-deb is not installed (cargo install cargo-deb)" >&2; exit 1; }
cargo build --release -p sesame --bins
rm -rf packaging/build
packaging/gen-docs.sh packaging/build/docs
deb=$(cargo deb -p sesame --no-build --no-strip 2>&1 | tail -n 1)
[ -f "$deb" ] || { echo "check-deb: cargo deb did not report a package: $deb" >&2; exit 1; }
root=$(mktemp -d)
ctl=$(mktemp -d)
trap 'rm -rf "$root" "$ctl"' EXIT
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$ctl"
fail=0
need() {
    if [ -e "$root/$1" ]; then echo "ok   /$1"; else echo "MISSING /$1"; fail=1; fi
}
for f in usr/bin/sesamed usr/bin/sesame \
    usr/lib/systemd/system/sesamed.service \
    etc/sesame/sesame.toml \
    usr/share/man/man8/sesamed.8.gz usr/share/man/man1/sesame.1.gz \
    usr/share/bash-completion/completions/sesamed usr/share/bash-completion/completions/sesame \
    usr/share/zsh/vendor-completions/_sesamed usr/share/zsh/vendor-completions/_sesame \
    usr/share/fish/vendor_completions.d/sesamed.fish usr/share/fish/vendor_completions.d/sesame.fish
do
    # man pages may be shipped compressed or not
    case $f in
        *.gz) [ -e "$root/$f" ] || f=${f%.gz} ;;
    esac
    need "$f"
done
check() {
    if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}
unit="$root/usr/lib/systemd/system/sesamed.service"
check "unit is Type=notify with a watchdog" 'grep -qx "Type=notify" "$unit" && grep -q "^WatchdogSec=" "$unit"'
check "unit keeps only CAP_NET_ADMIN" 'grep -qx "CapabilityBoundingSet=CAP_NET_ADMIN" "$unit"'
check "config is a conffile" 'grep -qx "/etc/sesame/sesame.toml" "$ctl/conffiles"'
check "config is not world-readable" '[ "$(stat -c %a "$root/etc/sesame/sesame.toml")" = 640 ]'
check "postinst creates the sesame user" 'grep -q "adduser --system" "$ctl/postinst"'
check "sesamed runs and validates the shipped config" '"$root/usr/bin/sesamed" --check-config "$root/etc/sesame/sesame.toml" >/dev/null'
man=$(ls "$root"/usr/share/man/man8/sesamed.8*)
check "man page documents --user" 'case $man in *.gz) zcat "$man";; *) cat "$man";; esac | grep -q -- "user"'
if command -v systemd-analyze >/dev/null; then
    score=$(systemd-analyze security --offline=true "$unit" 2>/dev/null | tail -n 1 || true)
    echo "info $score"
fi
echo "--- $deb"
dpkg-deb -c "$deb" | awk '{print $1, $6}'
[ "$fail" = 0 ] || { echo "check-deb: FAILED" >&2; exit 1; }
echo "check-deb: OK"
