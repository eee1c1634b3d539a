#!/usr/bin/env bash
# Boots the Debian package under real systemd and uses it as a new user
# would: a Debian 12 root (debootstrap, cached), booted with
# systemd-nspawn in a network namespace of its own, two client namespaces
# (the laptop and a stranger) wired to it by veth pairs. It runs the
# README's quick start literally (the laptop's blocks in the laptop
# namespace, the server's inside the container), then checks what the unit
# promises: the knocker gets in over IPv4 and IPv6 and the stranger does
# not; grants end in the kernel; reload and restart keep grants; the
# watchdog is fed; `nft flush ruleset` is healed; stop leaves the port
# closed; `apt remove` deletes the table and says so; purge removes config
# and state.
#
# Usage: packaging/test-systemd.sh BIN_DIR   (BIN_DIR holds sesamed, sesame)
# Needs root, debootstrap, systemd-nspawn, iproute2, dpkg-deb and a Debian
# mirror the first time (SESAME_DEBIAN_MIRROR, default deb.debian.org).
# The root is cached in SESAME_ROOTFS_CACHE (default
# /var/cache/sesame-ci/bookworm-<list>) and only read: each run boots an
# overlay of it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bins=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
packages=systemd,systemd-sysv,dbus,nftables,iproute2,adduser,sudo,openssh-server,procps
cache=${SESAME_ROOTFS_CACHE:-/var/cache/sesame-ci/bookworm-$(echo "$packages" | md5sum | cut -c1-8)}
mirror=${SESAME_DEBIAN_MIRROR:-http://deb.debian.org/debian}

step() { printf '\n== %s\n' "$*"; }
leader=
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    if [ -n "$leader" ]; then
        echo "--- journalctl -u sesamed (last 40 lines)" >&2
        nsenter -t "$leader" -a -- journalctl -u sesamed --no-pager -n 40 >&2 || true
    fi
    exit 1
}
pass() { printf 'ok   %s\n' "$*"; }

for tool in debootstrap systemd-nspawn ip dpkg-deb nsenter; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (apt-get install debootstrap systemd-container iproute2)"
done
[ "$(id -u)" = 0 ] || fail "needs root"

id=$$
ct=sesct$id lap=seslap$id str=sesstr$id
work=$(mktemp -d /tmp/sesame-systemd.XXXXXX)
merged=$work/merged
nspawn_pid=
cleanup() {
    set +e
    if [ -n "$nspawn_pid" ]; then
        kill -TERM "$nspawn_pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$nspawn_pid" 2>/dev/null
        wait "$nspawn_pid" 2>/dev/null
    fi
    mountpoint -q "$merged" && umount -l "$merged"
    for ns in "$ct" "$lap" "$str"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'fail "line $LINENO: $BASH_COMMAND exited with $?"' ERR

step "Debian 12 root ($cache)"
if [ ! -e "$cache/.complete" ]; then
    rm -rf "$cache.tmp"
    mkdir -p "$(dirname "$cache")"
    start=$(date +%s)
    debootstrap --variant=minbase --include="$packages" bookworm "$cache.tmp" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -n 20 "$work/debootstrap.log"; fail "debootstrap"; }
    touch "$cache.tmp/.complete"
    rm -rf "$cache"
    mv "$cache.tmp" "$cache"
    echo "made in $(($(date +%s) - start)) s (cached for later runs)"
else
    echo "cached"
fi

step "package"
deb=$(packaging/build-deb.sh "$bins" amd64 "$work/deb")
ls -l "$deb"
sh packaging/check-deb.sh "$deb" | grep -v '^[-d]' || fail "check-deb"

step "network: container, laptop and stranger namespaces"
ip netns add "$ct"; ip netns add "$lap"; ip netns add "$str"
ip link add "l$id" netns "$ct" type veth peer name eth0 netns "$lap"
ip link add "s$id" netns "$ct" type veth peer name eth0 netns "$str"
ip -n "$ct" addr add 10.77.1.1/24 dev "l$id"
ip -n "$ct" addr add fd77:1::1/64 dev "l$id" nodad
ip -n "$ct" addr add 10.77.2.1/24 dev "s$id"
ip -n "$ct" addr add fd77:2::1/64 dev "s$id" nodad
ip -n "$lap" addr add 10.77.1.2/24 dev eth0
ip -n "$lap" addr add fd77:1::2/64 dev eth0 nodad
ip -n "$str" addr add 10.77.2.2/24 dev eth0
ip -n "$str" addr add fd77:2::2/64 dev eth0 nodad
for ns in "$ct" "$lap" "$str"; do ip -n "$ns" link set lo up; done
ip -n "$ct" link set "l$id" up; ip -n "$ct" link set "s$id" up
ip -n "$lap" link set eth0 up; ip -n "$str" link set eth0 up
ip -n "$lap" route add default via 10.77.1.1
ip -n "$lap" -6 route add default via fd77:1::1
ip -n "$str" route add default via 10.77.2.1
ip -n "$str" -6 route add default via fd77:2::1

step "boot under systemd-nspawn"
mkdir -p "$work/upper" "$work/ovwork" "$merged"
mount -t overlay overlay -o "lowerdir=$cache,upperdir=$work/upper,workdir=$work/ovwork" "$merged"
cp "$deb" "$merged/root/"
# A host name sshd and sudo can resolve.
echo "127.0.1.1 $ct $(hostname)" >>"$merged/etc/hosts"
systemd-nspawn -q -D "$merged" --boot --register=no --keep-unit --kill-signal=SIGRTMIN+3 --capability=CAP_NET_ADMIN \
    --network-namespace-path="/run/netns/$ct" --machine="$ct" >"$work/console.log" 2>&1 &
nspawn_pid=$!
# The container's PID 1 is nspawn's child named systemd (nspawn briefly has
# another child while it sets the container up: do not take that one).
for _ in $(seq 100); do
    leader=$(pgrep -P "$nspawn_pid" -x systemd | head -n 1 || true)
    [ -n "$leader" ] && break
    sleep 0.1
done
[ -n "$leader" ] || { cat "$work/console.log"; fail "the container did not start"; }
# Runs a shell script inside the container, as root in /root.
inside() { nsenter -t "$leader" -a -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root /bin/bash -c "cd /root && $1"; }
state=
for _ in $(seq 120); do
    state=$(inside 'systemctl is-system-running' 2>/dev/null || true)
    case $state in running|degraded) break ;; esac
    sleep 0.5
done
case $state in running|degraded) ;; *) tail -n 30 "$work/console.log"; fail "systemd did not finish booting (state: $state)" ;; esac
echo "systemd $(inside 'systemctl --version | head -n 1 | cut -d" " -f2') is $state"
inside 'systemctl is-active --quiet ssh' || fail "sshd is not running in the container"

# Laptop helpers: `scp FILE server.example:NAME` lands in the container's
# /root; `ssh server.example` reads the SSH banner over TCP (3 s limit).
cat >"$work/laptop-env.sh" <<'EOF'
set -euo pipefail
scp() { install -m 600 "$1" "$MERGED/root/${2#*:}"; }
ssh() {
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/22" && IFS= read -r -t 3 b <&3 && echo "ssh: $0 answered: $b" && [[ $b == SSH-2.0-* ]]' "$1"
}
EOF
laptop() {
    mkdir -p "$work/home"
    ip netns exec "$lap" env -i PATH="$bins:/usr/sbin:/usr/bin:/sbin:/bin" HOME="$work/home" USER=me \
        MERGED="$merged" bash -c "source '$work/laptop-env.sh'; $1"
}
# `banner NETNS ADDR`: succeeds when sshd answers from NETNS within 3 s.
banner() {
    ip netns exec "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/22 && IFS= read -r -t 2 b <&3 && [[ \$b == SSH-2.0-* ]]" 2>/dev/null
}
expect_open() { banner "$1" "$2" || fail "$3: port 22 at $2 is closed from $1"; pass "$3"; }
expect_closed() { ! banner "$1" "$2" || fail "$3: port 22 at $2 answers $1"; pass "$3"; }

expect_open "$str" 10.77.2.1 "before sesame: ssh answers everyone"

step "README quick start, literally (server.example = 10.77.1.1)"
block() { # block NAME: the README's fenced block after <!-- quickstart:NAME -->
    awk -v want="<!-- quickstart:$1 -->" '
        $0 == want { armed = 1; next }
        armed && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }' README.md | sed 's/server\.example/10.77.1.1/g'
}
for part in laptop-1 server laptop-2; do
    text=$(block "$part")
    [ -n "$text" ] || fail "README has no <!-- quickstart:$part --> block"
    printf -- '--- %s\n%s\n---\n' "$part" "$text"
    case $part in
        server) inside "set -euo pipefail; $text" || fail "quick start ($part)" ;;
        *) laptop "$text" || fail "quick start ($part)" ;;
    esac
done
pass "quick start: the laptop knocked and sshd answered it"
expect_closed "$str" 10.77.2.1 "the stranger is refused"
expect_closed "$str" fd77:2::1 "the stranger is refused over IPv6"
expect_closed "$lap" fd77:1::1 "the laptop's IPv4 grant does not open IPv6"
laptop 'sesame knock -6 fd77:1::1 --spa-key ~/.config/sesame/ssh.key'
sleep 0.3
expect_open "$lap" fd77:1::1 "an IPv6 knock opens IPv6 for the laptop"

step "the unit"
inside 'systemctl show sesamed -p User -p Type -p WatchdogUSec -p ActiveState -p NRestarts'
score=$(inside 'systemd-analyze security sesamed.service 2>/dev/null | tail -n 1')
echo "$score"
case $score in *"1."[0-9]*" OK"*|*"0."[0-9]*) pass "systemd-analyze security: $score" ;; *) fail "exposure score above 2.0: $score" ;; esac
pid=$(inside 'systemctl show -p MainPID --value sesamed')
caps=$(inside "grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/$pid/status | tr '\n' ' '")
echo "sesamed caps: $caps"
case $caps in *"CapInh:	0000000000000000"*"CapAmb:	0000000000000000"*) pass "nothing inheritable or ambient" ;; *) fail "caps: $caps" ;; esac

step "grants end in the kernel"
inside 'sesame open 10.77.2.2 --door ssh --for 3s'
expect_open "$str" 10.77.2.1 "a 3 s manual grant lets the stranger in"
sleep 4
expect_closed "$str" 10.77.2.1 "and the kernel closes it 3 s later"

step "reload and restart keep grants"
inside 'systemctl reload sesamed'
sleep 0.5
expect_open "$lap" 10.77.1.1 "after systemctl reload"
inside 'systemctl restart sesamed'
sleep 0.5
inside 'systemctl is-active --quiet sesamed' || fail "restart"
expect_open "$lap" 10.77.1.1 "after systemctl restart"
expect_closed "$str" 10.77.2.1 "still closed to the stranger"

step "the watchdog is fed"
inside 'mkdir -p /run/systemd/system/sesamed.service.d && printf "[Service]\nWatchdogSec=2s\n" >/run/systemd/system/sesamed.service.d/watchdog.conf && systemctl daemon-reload && systemctl restart sesamed'
before=$(inside 'systemctl show -p NRestarts --value sesamed')
sleep 7
after=$(inside 'systemctl show -p NRestarts --value sesamed')
inside 'systemctl is-active --quiet sesamed' || fail "sesamed died under WatchdogSec=2s"
[ "$before" = "$after" ] || fail "restarted by the watchdog ($before -> $after)"
inside 'journalctl -u sesamed --no-pager | grep -q "watchdog timeout"' && fail "systemd logged a watchdog timeout"
pass "7 s under WatchdogSec=2s: no restart, no watchdog timeout"
inside 'rm -r /run/systemd/system/sesamed.service.d && systemctl daemon-reload'

step "nft flush ruleset (nftables.service does it on start, reload and stop)"
# Linux 6.9+: the kernel holds the table as sesamed's own and the flush
# leaves it alone; older kernels: sesamed restores it at once.
if inside 'journalctl -u sesamed --no-pager -o cat EVENT=table_owned | tail -n 1 | grep -q "holds table"'; then
    owned=yes
    inside 'nft list table inet sesame | grep -q "flags owner"' || fail "the table is not flagged owner"
    pass "the kernel holds table inet sesame as sesamed's own"
else
    owned=no
    echo "this kernel cannot own tables: the restore path is checked"
fi
for i in 1 2 3; do
    inside 'nft flush ruleset'
    sleep 0.2
    inside 'nft list table inet sesame >/dev/null' || fail "flush $i: no table inet sesame"
    expect_closed "$str" 10.77.2.1 "flush $i: the stranger is refused"
    expect_open "$lap" 10.77.1.1 "flush $i: the laptop's grant is there"
done
inside 'systemctl restart nftables'
sleep 0.2
expect_closed "$str" 10.77.2.1 "systemctl restart nftables: still closed to the stranger"
expect_open "$lap" 10.77.1.1 "systemctl restart nftables: the laptop's grant is there"
if [ "$owned" = yes ]; then
    ! inside 'nft delete table inet sesame 2>/dev/null' || fail "another program deleted the owned table"
    pass "nft delete table inet sesame is refused while sesamed runs"
else
    n=$(inside 'journalctl -u sesamed --no-pager -o cat EVENT=table_restored | grep -c "changed from outside"' || true)
    [ "$n" -ge 4 ] || fail "expected 4 table_restored events, found $n"
    pass "$n restores logged"
fi

step "systemctl stop leaves the port closed"
inside 'systemctl stop sesamed'
inside 'nft list table inet sesame >/dev/null' || fail "stop removed the table"
expect_closed "$str" 10.77.2.1 "stopped: still closed to the stranger"

step "apt remove deletes the table and says so"
out=$(inside 'apt-get remove -y sesame 2>&1')
echo "$out" | grep 'sesame:' || true
echo "$out" | grep -q "removed nftables table inet sesame" || fail "remove did not say it removed the table"
inside '! nft list table inet sesame >/dev/null 2>&1' || fail "the table is still there after remove"
expect_open "$str" 10.77.2.1 "removed: sshd answers the stranger again (no table left)"
inside 'test -f /etc/sesame/sesame.toml' || fail "remove deleted the config (only purge may)"

step "purge removes config and state"
inside 'apt-get purge -y sesame >/dev/null 2>&1'
inside '! test -e /etc/sesame && ! test -e /var/lib/sesame' || fail "purge left /etc/sesame or /var/lib/sesame"
pass "purged"

printf '\nsystemd container test: OK\n'
