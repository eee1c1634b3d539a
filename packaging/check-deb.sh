#!/bin/sh
# Checks what a Debian package of sesame installs, unpacked into a
# throw-away folder (dpkg-deb -x; no dpkg database touched): binaries
# (stripped, right names and versions), the unit, the config (a conffile
# with no live door), man pages for every command and sesame.toml(5),
# completions, docs, maintainer scripts, and the unit's exposure score.
# Usage: packaging/check-deb.sh DEB   (packaging/test-systemd.sh runs it)
set -eu
deb=${1:?usage: $0 DEB}
[ -f "$deb" ] || { echo "check-deb: $deb: no such file" >&2; exit 1; }
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
    usr/share/man/man1/sesame-knock.1.gz usr/share/man/man1/sesame-keygen.1.gz \
    usr/share/man/man5/sesame.toml.5.gz \
    usr/share/bash-completion/completions/sesamed usr/share/bash-completion/completions/sesame \
    usr/share/zsh/vendor-completions/_sesamed usr/share/zsh/vendor-completions/_sesame \
    usr/share/fish/vendor_completions.d/sesamed.fish usr/share/fish/vendor_completions.d/sesame.fish \
    usr/share/doc/sesame/README.md usr/share/doc/sesame/SECURITY.md \
    usr/share/doc/sesame/fwknop.md usr/share/doc/sesame/spa-protocol.md \
    usr/share/doc/sesame/copyright
do
    need "$f"
done
check() {
    if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}
bin=$root/usr/bin
unit="$root/usr/lib/systemd/system/sesamed.service"
check "unit is Type=notify with a watchdog" 'grep -qx "Type=notify" "$unit" && grep -q "^WatchdogSec=" "$unit"'
check "unit keeps only CAP_NET_ADMIN" 'grep -qx "CapabilityBoundingSet=CAP_NET_ADMIN" "$unit"'
check "unit starts after nftables.service" 'grep -q "^After=.*nftables.service" "$unit"'
check "config is a conffile" 'grep -qx "/etc/sesame/sesame.toml" "$ctl/conffiles"'
check "config is not world-readable" '[ "$(stat -c %a "$root/etc/sesame/sesame.toml")" = 640 ]'
check "postinst creates the sesame user" 'grep -q "adduser --system" "$ctl/postinst"'
check "prerm removes the table on removal" 'grep -q -- "--remove" "$ctl/prerm"'
check "postrm purges config and state" 'grep -q "rm -rf /etc/sesame /var/lib/sesame" "$ctl/postrm"'
check "binaries are stripped" '! grep -q "\.debug_info\|\.symtab" "$bin/sesamed" "$bin/sesame" 2>/dev/null || { command -v readelf >/dev/null && ! readelf -S "$bin/sesamed" | grep -q "\.symtab"; }'
check "sesamed -V names sesamed" '"$bin/sesamed" -V | grep -qx "sesamed [0-9.]*"'
check "sesame -V names sesame" '"$bin/sesame" -V | grep -qx "sesame [0-9.]*"'
check "the shipped config has no live door" '! "$bin/sesamed" --check-config "$root/etc/sesame/sesame.toml" >/dev/null 2>"$ctl/check.err" && grep -q "no door defined" "$ctl/check.err"'
check "sesamed(8) has FILES, SIGNALS, EXIT STATUS, EXAMPLES" 'zcat "$root/usr/share/man/man8/sesamed.8.gz" | grep -q "^.SH SIGNALS" && zcat "$root/usr/share/man/man8/sesamed.8.gz" | grep -q "^.SH \"EXIT STATUS\""'
if command -v systemd-analyze >/dev/null; then
    score=$(systemd-analyze security --offline=true "$unit" 2>/dev/null | tail -n 1 || true)
    echo "info $score"
fi
echo "--- $deb"
dpkg-deb -c "$deb" | awk '{print $1, $6}'
[ "$fail" = 0 ] || { echo "check-deb: FAILED" >&2; exit 1; }
echo "check-deb: OK"
