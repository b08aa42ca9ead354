#!/bin/bash
# RAUC custom bootloader backend for the Raspberry Pi firmware's tryboot
# (bootloader=custom in /etc/rauc/system.conf).
#
# Slot A boots from partition 2, slot B from partition 3. The always-booted
# first FAT partition holds autoboot.txt:
#   [all]
#   tryboot_a_b=1
#   boot_partition=2        <- primary (good) slot
#   [tryboot]
#   boot_partition=3        <- tried once after `reboot "0 tryboot"`
# RAUC marks the new slot primary with set-primary: we point [tryboot] at it
# and reboot into it once; rauc-mark-good.service (after the agent passed its
# health check) commits it into [all] by `rauc status mark-good`, which calls
# set-state good. A failed try falls back to [all] by itself at the next reset
# (the hardware watchdog resets a hung boot).
#
# ALPR_AUTOBOOT and ALPR_BOOT_PARTITION_NUMBER let tests run this on a file.
set -euo pipefail

autoboot="${ALPR_AUTOBOOT:-/boot/firmware/autoboot.txt}"
state_dir="${ALPR_RAUC_STATE:-/var/lib/alpr/rauc-tryboot}"

part_of() { case "$1" in A) echo 2 ;; B) echo 3 ;; *) echo "unknown bootname $1" >&2; exit 1 ;; esac; }
name_of() { case "$1" in 2) echo A ;; 3) echo B ;; *) echo "unknown boot partition $1" >&2; exit 1 ;; esac; }

section_value() {  # section key
    awk -v s="[$1]" -v k="$2" '
        /^\[/ { in_s = ($0 == s) ; next }
        in_s && index($0, k "=") == 1 { print substr($0, length(k) + 2); exit }' "$autoboot"
}

write_autoboot() {  # primary tryboot
    local tmp="${autoboot}.new"
    printf '[all]\ntryboot_a_b=1\nboot_partition=%s\n[tryboot]\nboot_partition=%s\n' "$1" "$2" > "$tmp"
    sync -f "$tmp" 2>/dev/null || sync
    mv -f -- "$tmp" "$autoboot"          # FAT: rename is as atomic as it gets
    sync -f "$autoboot" 2>/dev/null || sync
}

current_partition() {
    if [ -n "${ALPR_BOOT_PARTITION_NUMBER:-}" ]; then echo "$ALPR_BOOT_PARTITION_NUMBER"; return; fi
    # The firmware reports the partition it booted from in the device tree.
    od -An -tu4 --endian=big /proc/device-tree/chosen/bootloader/partition 2>/dev/null | tr -d ' '
}

mkdir -p "$state_dir"
cmd="${1:-}"
case "$cmd" in
    get-primary)
        name_of "$(section_value all boot_partition)" ;;
    set-primary)
        # The new slot is tried once; it becomes [all] when marked good.
        write_autoboot "$(section_value all boot_partition)" "$(part_of "$2")"
        echo bad > "$state_dir/$2" ;;
    get-state)
        if [ -f "$state_dir/$2" ]; then cat "$state_dir/$2"; else echo good; fi ;;
    set-state)
        echo "$3" > "$state_dir/$2"
        if [ "$3" = good ]; then
            primary=$(part_of "$2")
            other=$([ "$primary" = 2 ] && echo 3 || echo 2)
            write_autoboot "$primary" "$other"
        fi ;;
    get-current)
        name_of "$(current_partition)" ;;
    *)
        echo "usage: $0 get-primary|set-primary SLOT|get-state SLOT|set-state SLOT good|bad|get-current" >&2
        exit 2 ;;
esac
