# vmctl installer: writes install/disk.img.gz from the installer medium to a disk of this
# machine, then powers off. It writes only to vmctl.target=/dev/X, or with vmctl.unattended=1
# (media made with --unattended), or once the chosen disk's name is typed on a console.
# Kernel parameters: vmctl.target=/dev/X, vmctl.force=1 (install over this same system),
# vmctl.unattended=1, vmctl.settle=S (seconds between two reads of the disks that must agree
# before one is chosen), vmctl.confirm=S (seconds to wait for the disk's name).
# VMCTL_*: other roots for /sys, /dev, /proc/cmdline, /run and sysrq, the defaults of the
# tunables, and where answers are read (unit tests run the installer on fake trees).
SYS=${VMCTL_SYS:-/sys}; DEV=${VMCTL_DEV:-/dev}; CMDLINE=${VMCTL_CMDLINE:-/proc/cmdline}
RUN=${VMCTL_RUN:-/run}; SYSRQ=${VMCTL_SYSRQ:-/proc/sysrq-trigger}; MEDIUM=$RUN/vmctl-medium
SETTLE=${VMCTL_SETTLE:-3}; SETTLE_ROUNDS=${VMCTL_SETTLE_ROUNDS:-10}; CONFIRM=${VMCTL_CONFIRM:-300}
target=""; force=""; unattended=""; TTYS=""
# say: a line on every console= of the kernel command line (screen and serial port).
say() { for t in $TTYS; do echo "vmctl-installer: $*" 2>/dev/null >> "$t"; done; return 0; }
# serial LINE: a marker for `vmctl image usb --verify`, which reads the first serial port.
serial() { echo "$*" 2>/dev/null >> "$DEV/ttyS0"; return 0; }
power_off() { sleep "$1"; echo o > "$SYSRQ"; while :; do sleep 3600; done; }
fail() {
    say "FAILED: $*"
    serial "vmctl-failed installer: $*"
    power_off 30
}
# num VALUE DEFAULT: VALUE if it is a whole number, else DEFAULT.
num() { case "$1" in ''|*[!0-9]*) echo "$2" ;; *) echo "$1" ;; esac; }
read_cmdline() {
    for x in $(cat "$CMDLINE"); do
        case "$x" in
            vmctl.target=*) target="${x#vmctl.target=}" ;;
            vmctl.force=1) force=1 ;;
            vmctl.unattended=1) unattended=1 ;;
            vmctl.settle=*) SETTLE="${x#vmctl.settle=}" ;;
            vmctl.confirm=*) CONFIRM="${x#vmctl.confirm=}" ;;
            console=*) c="${x#console=}"; TTYS="$TTYS $DEV/${c%%,*}" ;;
        esac
    done
    SETTLE=$(num "$SETTLE" 3); SETTLE_ROUNDS=$(num "$SETTLE_ROUNDS" 10); CONFIRM=$(num "$CONFIRM" 300)
    [ "$SETTLE_ROUNDS" -ge 1 ] || SETTLE_ROUNDS=1
    [ -n "$TTYS" ] || TTYS="$DEV/console"
}
# disk_of NAME: the whole disk a block device belongs to (sdb1 -> sdb, nvme0n1p2 -> nvme0n1).
disk_of() {
    n=${1##*/}
    if [ -e "$SYS/class/block/$n/partition" ]; then n=$(basename "$(dirname "$(readlink -f "$SYS/class/block/$n")")"); fi
    echo "$n"
}
# is_disk PATH: a block device (any file on a fake /dev).
is_disk() { if [ -n "$VMCTL_DEV" ]; then [ -f "$1" ]; else [ -b "$1" ]; fi; }
# ignored NAME: never a disk to install to (loop, RAM, optical, mapper, eMMC boot areas...).
ignored() { case "$1" in loop*|ram*|sr*|zram*|fd*|dm-*|md*|nbd*|mmcblk*boot*|*rpmb) return 0 ;; esac; return 1; }
disks_report() {
    for d in "$SYS"/block/*; do printf '%s(%sMiB) ' "${d##*/}" $(( $(cat "$d/size") / 2048 )); done
}
# disk_set: every disk that could be a target, with its size (one read of the disks).
disk_set() { for d in "$SYS"/block/*; do ignored "${d##*/}" || echo "${d##*/} $(cat "$d/size" 2>/dev/null)"; done; }
# settle: succeeds once two reads of the disks SETTLE seconds apart agree, at most
# SETTLE_ROUNDS times, so a controller still probing cannot hide a second disk.
settle() {
    if [ "$SYS" = /sys ] && command -v udevadm >/dev/null 2>&1; then udevadm settle --timeout=30 >/dev/null 2>&1; fi
    before=$(disk_set) round=0
    while [ $round -lt "$SETTLE_ROUNDS" ]; do
        sleep "$SETTLE"
        after=$(disk_set)
        [ "$after" = "$before" ] && return 0
        before=$after round=$((round + 1))
    done
    return 1
}
# pick_target NEED MEDIUM_DISK: prints the one internal disk of at least NEED bytes that
# is not the medium; or says on stderr why there is none or no single one, and returns 1.
pick_target() {
    need=$1 candidates=""
    for d in "$SYS"/block/*; do
        n=${d##*/}
        ignored "$n" && continue
        [ "$n" = "$2" ] && continue
        [ -e "$DEV/$n" ] || continue            # hidden NVMe multipath paths have no node
        [ "$(cat "$d/removable" 2>/dev/null)" = 1 ] && continue
        case "$(readlink -f "$d")" in */usb*) continue ;; esac
        [ $(( $(cat "$d/size") * 512 )) -ge "$1" ] || continue
        candidates="$candidates $DEV/$n"
    done
    set -- $candidates
    if [ $# -eq 0 ]; then echo "no internal disk of at least $need bytes (disks: $(disks_report))" >&2; return 1; fi
    if [ $# -gt 1 ]; then
        echo "several disks could be the target:$candidates; boot again with vmctl.target=/dev/X (press e in the menu)" >&2
        return 1
    fi
    echo "$1"
}
# confirm DISK: succeeds only if the disk's name is typed on a console within CONFIRM seconds.
confirm() {
    name=${1##*/}
    model=$(cat "$SYS/block/$name/device/model" 2>/dev/null)
    say "@VMCTL_TITLE@ will ERASE $name ($(( have / 1048576 )) MiB${model:+, $model}) and install itself there."
    say "Type $name and Enter within $CONFIRM s to go ahead; anything else, or nothing, powers off without writing."
    rm -f "$RUN"/vmctl-answer.*
    readers="" k=0
    for t in ${VMCTL_INPUT:-$TTYS}; do
        k=$((k + 1))
        ( read -r a < "$t" && echo "$a" > "$RUN/.vmctl-answer$k" && mv "$RUN/.vmctl-answer$k" "$RUN/vmctl-answer.$k" ) >/dev/null 2>&1 &
        readers="$readers $!"
    done
    i=0 got="" answer=""
    while [ $i -lt $((CONFIRM * 2)) ] && [ -z "$got" ]; do
        for f in "$RUN"/vmctl-answer.*; do [ -e "$f" ] && { got=1; answer=$(cat "$f"); }; done
        [ -n "$got" ] || { sleep 0.5; i=$((i + 1)); }
    done
    kill $readers 2>/dev/null
    [ -n "$got" ] || fail "nobody typed $name within $CONFIRM s: nothing written (vmctl.target=/dev/$name, or media made with --unattended, install without asking)"
    set -f; set -- $answer; set +f
    case "${1:-}" in "$name"|"/dev/$name") [ $# -eq 1 ] && return 0 ;; esac
    fail "'$answer' is not $name: nothing written"
}
# install_system MEDIUM_DISK: chooses and checks the target, asks when it must, writes the
# system and powers off. The medium is mounted at $MEDIUM.
install_system() {
    mdisk=$1 named=""
    need=$(cat "$MEDIUM/install/disk.size")
    if [ -n "$target" ]; then
        named=$target
        case "$target" in /dev/*) target="$DEV/${target#/dev/}" ;; esac
        target=$(readlink -f "$target")
        is_disk "$target" || fail "vmctl.target=$named is not a block device (disks: $(disks_report))"
        [ "$(disk_of "$target")" != "$mdisk" ] || fail "vmctl.target=$named is the installer medium itself"
    else
        say "waiting until two reads of the disks $SETTLE s apart agree"
        settle || fail "the disks were still changing after $SETTLE_ROUNDS reads $SETTLE s apart (disks: $(disks_report)); boot again with vmctl.target=/dev/X (press e in the menu)"
        target=$(pick_target "$need" "$mdisk" 2>"$RUN/vmctl-why") || fail "$(cat "$RUN/vmctl-why")"
    fi
    have=$(( $(cat "$SYS/class/block/${target##*/}/size") * 512 ))
    [ "$have" -ge "$need" ] || fail "$target has $have bytes; the system needs $need"
    # The GPT header is at LBA 1 and its disk GUID at byte 56 of it: LBA 1 starts after one
    # logical block, 512 bytes on most disks, 4096 on 4Kn ones.
    lbs=$(num "$(cat "$SYS/block/$(disk_of "$target")/queue/logical_block_size" 2>/dev/null)" 512)
    dd if="$target" of="$RUN/vmctl-target.guid" bs=8 skip=$(( (lbs + 56) / 8 )) count=2 2>/dev/null
    if [ -z "$force" ] && cmp -s "$RUN/vmctl-target.guid" "$MEDIUM/install/disk.guid"; then
        say "$target already holds this system: nothing written. Remove the installer medium and boot from the disk (vmctl.force=1 installs again)"
        serial "vmctl-already-installed $target"
        umount "$MEDIUM"
        power_off 10
    fi
    [ "$lbs" = 512 ] || fail "$target has $lbs-byte sectors and the system's disk is laid out for 512-byte ones: it would not boot from it (nothing written); choose another disk with vmctl.target=/dev/X"
    [ -n "$named" ] || [ -n "$unattended" ] || confirm "$target"
    say "writing @VMCTL_TITLE@ to $target ($have bytes): everything on it is replaced"
    zcat "$MEDIUM/install/disk.img.gz" > "$target" || fail "writing $target failed"
    sync
    umount "$MEDIUM"
    say "done: remove the installer medium and boot from $target"
    serial "@VMCTL_DONE_MARKER@ $target"
    power_off 2
}
# find_medium: mounts the CD-ROM or disk that holds this installer at $MEDIUM, sets $medium.
find_medium() {
    mkdir -p "$MEDIUM"
    say "looking for the installer medium (volume @VMCTL_VOLUME_ID@)"
    medium="" i=0
    while [ -z "$medium" ] && [ $i -lt 120 ]; do
        # Any CD-ROM or disk that holds this installer (the ISO may also be dd'ed to a stick).
        for dev in /dev/sr* /dev/sd* /dev/vd* /dev/nvme*n* /dev/mmcblk*; do
            [ -b "$dev" ] || continue
            if mount -t iso9660 -o ro "$dev" "$MEDIUM" 2>/dev/null; then
                if [ -f "$MEDIUM/install/disk.img.gz" ]; then medium=$dev; break; fi
                umount "$MEDIUM"
            fi
        done
        [ -n "$medium" ] || { sleep 0.5; i=$((i + 1)); }
    done
    [ -n "$medium" ] || fail "the installer medium did not appear (disks: $(disks_report))"
}
mountroot() {
    read_cmdline
    modprobe -q isofs 2>/dev/null; modprobe -q sr_mod 2>/dev/null; modprobe -q usb_storage 2>/dev/null
    find_medium
    mdisk=$(disk_of "$medium")
    say "installer medium: $medium (disk $mdisk)"
    install_system "$mdisk"
}
