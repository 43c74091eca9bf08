#!/usr/bin/env bash
# Builds Switchboard for aarch64 and runs it on emulated aarch64 machines.
#
# User-mode qemu has no io_uring, so the shards cannot start there: this boots whole
# machines instead. It cross-builds the release binaries (gateway, storage-bridge,
# kernel-tuning, loadtest) and the unit and property tests of the pure crates (core,
# protocol, kernel-tuning) for aarch64-unknown-linux-gnu, assembles an initramfs from
# Debian's packages only (arm64 kernels and busybox-static through dpkg multiarch, the C
# runtime from the cross toolchain's libc6-arm64-cross) and boots it with
# qemu-system-aarch64 (`virt` machine, 2 cores), twice:
#
#   4k   Debian's arm64 kernel (4 KiB pages) on a Cortex-A72: ARMv8.0 without LSE atomics,
#        as Phytium's FTC662/FTC663. Everything below.
#   16k  Debian's arm64-16k kernel (16 KiB pages; backports on bookworm) on a Neoverse N1:
#        ARMv8.2 with LSE atomics, close to Kunpeng 920's TaiShan v110. Everything below
#        but the unit and property tests: what differs there is the page size.
#
# Inside, scripts/aarch64/checks.sh runs the unit and property tests, `kernel-tuning check`
# and `apply`, and the gateway with 2 shards and its storage bridge (embedded store) under
# `loadtest chat` and `loadtest churn`, which must lose and duplicate nothing.
#
# Usage: scripts/aarch64.sh [--only 4k|16k] [--as-deployed] [--timeout SECONDS]
#   --only         boot one of the two machines.
#   --as-deployed  build exactly as deploy/README.md does (thin LTO, debug info); by
#                  default the same optimisation level without LTO and debug info, which
#                  builds in about two thirds of the time.
#   --timeout      for each emulated run, in seconds (default 900).
# The exit status is 0 when every machine printed "aarch64 result: PASS". Their consoles
# are kept in target/aarch64-vm/console-{4k,16k}.log. Needs root for apt-get the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

machines="4k 16k"
as_deployed=""
timeout_s=900
while [ $# -gt 0 ]; do
    case "$1" in
        --only)
            case "${2:-}" in 4k|16k) machines=$2 ;; *) echo "aarch64.sh: --only takes 4k or 16k" >&2; exit 2 ;; esac
            shift 2 ;;
        --as-deployed) as_deployed=yes; shift ;;
        --timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "aarch64.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

target=aarch64-unknown-linux-gnu
work=target/aarch64-vm
say() { echo "aarch64.sh: $*"; }
need_root() {
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "aarch64.sh: $* (as root, with apt-get)" >&2
        exit 1
    fi
}

# --- Tools and packages, each installed only when missing --------------------------------
apt_install() {
    need_root "missing $*: install these Debian packages"
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null \
        || { apt-get update >/dev/null \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null; }
}
command -v qemu-system-aarch64 >/dev/null || apt_install qemu-system-arm
command -v aarch64-linux-gnu-gcc >/dev/null || apt_install gcc-aarch64-linux-gnu
[ -e /usr/aarch64-linux-gnu/include/stdio.h ] || apt_install libc6-dev-arm64-cross
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

# The kernels and busybox come from Debian's archive through multiarch.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    need_root "add the arm64 architecture once: dpkg --add-architecture arm64 && apt-get update"
    say "adding the arm64 architecture to dpkg (multiarch)"
    dpkg --add-architecture arm64
    apt-get update >/dev/null
fi
# The package a metapackage (linux-image-arm64:arm64...) stands for.
resolve() { apt-cache depends "$1" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}' || true; }
# Downloads PACKAGE into $work/debs/NAME/ once.
fetch_deb() {
    local name=$1 package=$2
    ls "$work/debs/$name"/*.deb >/dev/null 2>&1 && return 0
    mkdir -p "$work/debs/$name"
    say "downloading $package"
    (cd "$work/debs/$name" && apt-get download "$package" 2>&1 | grep -v '^W: Download is performed unsandboxed') || true
    ls "$work/debs/$name"/*.deb >/dev/null 2>&1 || { echo "aarch64.sh: could not download $package" >&2; exit 1; }
}
fetch_deb busybox busybox-static:arm64
for m in $machines; do
    [ "$m" = 4k ] && meta=linux-image-arm64:arm64 || meta=linux-image-arm64-16k:arm64
    ls "$work/debs/kernel-$m"/*.deb >/dev/null 2>&1 && continue
    package=$(resolve "$meta")
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    if [ -z "$package" ] && [ "$m" = 16k ] \
        && ! grep -rqs -- "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        # Bookworm has the 16 KiB-page flavour in backports only: that suite, for arm64
        # alone, so the host's own packages are untouched.
        need_root "add ${codename}-backports for arm64 to apt"
        say "adding ${codename}-backports (arm64 only) to apt for $meta"
        cat > /etc/apt/sources.list.d/switchboard-arm64-backports.sources <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: ${codename}-backports
Components: main
Architectures: arm64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        apt-get update >/dev/null
    fi
    [ -n "$package" ] || package=$(resolve "$meta")
    if [ -z "$package" ]; then
        need_root "apt knows no $meta yet: apt-get update"
        apt-get update >/dev/null
        package=$(resolve "$meta")
    fi
    [ -n "$package" ] || { echo "aarch64.sh: apt knows no $meta" >&2; exit 1; }
    fetch_deb "kernel-$m" "$package"
done
rm -rf "$work/pkgs" && mkdir -p "$work/pkgs"
dpkg-deb -x "$work"/debs/busybox/*.deb "$work/pkgs/busybox"
for m in $machines; do
    # The kernel image only, not its hundreds of MB of modules (nothing here needs one).
    mkdir -p "$work/pkgs/kernel-$m"
    dpkg-deb --fsys-tarfile "$work/debs/kernel-$m"/*.deb | tar -x -C "$work/pkgs/kernel-$m" ./boot
done

# --- The aarch64 build -------------------------------------------------------------------
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
if [ -z "$as_deployed" ]; then
    export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
fi
say "cross-building the release binaries for $target${as_deployed:+ (as deployed)}"
cargo build --release --locked --target "$target" -p gateway -p storage-bridge -p kernel-tuning -p loadtest
say "cross-building the unit and property tests of core, protocol and kernel-tuning"
# kernel-tuning's own integration tests drive its binary through host paths and network
# namespaces (they run in scripts/test.sh); its unit tests run on the machine.
tests=$(cargo test --release --locked --target "$target" -p switchboard-core -p switchboard-protocol \
    -p kernel-tuning --no-run --message-format=json \
    | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable") or not m["profile"]["test"]:
        continue
    if m["target"]["kind"] == ["test"] and "/kernel-tuning/" in m["target"]["src_path"]:
        continue
    print(m["executable"])')
[ -n "$tests" ] || { echo "aarch64.sh: the aarch64 test build produced no test executables" >&2; exit 1; }

# --- The machines' root: busybox, the C runtime, Switchboard, the init -------------------
root="$work/root"
rm -rf "$root"
mkdir -p "$root"/{bin,lib,etc,proc,sys,dev,tmp,root,data,opt/switchboard/bin,opt/switchboard/tests}
cp "$work/pkgs/busybox/bin/busybox" "$root/bin/"
for bin in gateway storage-bridge kernel-tuning loadtest; do
    aarch64-linux-gnu-strip -o "$root/opt/switchboard/bin/$bin" "target/$target/release/$bin"
done
for t in $tests; do
    name=$(basename "$t" | sed 's/-[0-9a-f]\{16\}$//')
    # Same-named test targets in two crates keep their hash to stay apart.
    [ -e "$root/opt/switchboard/tests/$name" ] && name=$(basename "$t")
    aarch64-linux-gnu-strip -o "$root/opt/switchboard/tests/$name" "$t"
done
# Every shared library the executables need, found the way the dynamic loader would.
sysroot=/usr/aarch64-linux-gnu/lib
needed() { aarch64-linux-gnu-readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
queue=$(for f in "$root"/opt/switchboard/bin/* "$root"/opt/switchboard/tests/*; do needed "$f"; done | sort -u)
# Name lookups ("localhost") go through NSS modules, loaded at run time.
queue="$queue libnss_files.so.2 libnss_dns.so.2"
while [ -n "$queue" ]; do
    next=""
    for lib in $queue; do
        [ -e "$root/lib/$lib" ] && continue
        [ -e "$sysroot/$lib" ] || { echo "aarch64.sh: $lib is not in $sysroot" >&2; exit 1; }
        cp -L "$sysroot/$lib" "$root/lib/$lib"
        next="$next $(needed "$root/lib/$lib")"
    done
    queue=$(echo "$next" | tr ' ' '\n' | sort -u | tr '\n' ' ' | sed 's/^ *//; s/ *$//')
done
cp -L "$sysroot/ld-linux-aarch64.so.1" "$root/lib/"
printf '127.0.0.1 localhost aarch64-test\n::1 localhost\n' > "$root/etc/hosts"
printf 'hosts: files dns\npasswd: files\ngroup: files\n' > "$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
install -m 0755 scripts/aarch64/init "$root/init"
install -m 0755 scripts/aarch64/checks.sh "$root/checks.sh"
python3 scripts/aarch64/mkinitramfs.py "$root" "$work/initrd.cpio.gz"
say "initramfs: $(du -h "$work/initrd.cpio.gz" | cut -f1), $(echo "$tests" | wc -w) test executables"

# --- Boot them ---------------------------------------------------------------------------
summary=""
failed=""
for m in $machines; do
    vmlinuz=$(ls "$work/pkgs/kernel-$m"/boot/vmlinuz-*)
    if [ "$m" = 4k ]; then cpu=cortex-a72; append=""; else cpu=neoverse-n1; append="switchboard.unit_tests=no"; fi
    console="$work/console-$m.log"
    say "booting $(basename "$vmlinuz") on qemu-system-aarch64 -M virt -cpu $cpu -smp 2 (emulated: expect minutes)"
    start=$(date +%s)
    set +e
    timeout --foreground "$timeout_s" qemu-system-aarch64 -M virt -cpu "$cpu" -smp 2 -m 3072 \
        -nographic -no-reboot -nic none -kernel "$vmlinuz" -initrd "$work/initrd.cpio.gz" \
        -append "console=ttyAMA0 panic=-1 quiet $append" < /dev/null 2>&1 | tr -d '\r' | tee "$console"
    qemu_status=${PIPESTATUS[0]}
    set -e
    took=$(( $(date +%s) - start ))
    result=$(grep -m1 '^aarch64 result:' "$console" || true)
    if [ "$result" = "aarch64 result: PASS" ]; then
        outcome=PASS
    elif [ "$qemu_status" -eq 124 ]; then
        outcome="FAIL: no result within $timeout_s s"
    else
        outcome="FAIL: ${result:-the machine stopped without a result}"
    fi
    [ "$outcome" = PASS ] || failed=yes
    summary="$summary
  $m: $outcome in ${took} s; $(grep -m1 '^kernel:' "$console" || echo 'kernel: ?'); $(grep -m1 '^cpu model:' "$console" || echo 'cpu model: ?'); $(grep -m1 '^page size:' "$console" || echo 'page size: ?')"
done
say "summary:$summary"
[ -z "$failed" ]
