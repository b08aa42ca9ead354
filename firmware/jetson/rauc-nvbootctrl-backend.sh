#!/bin/bash
# RAUC custom bootloader backend for Jetson (UEFI A/B via nvbootctrl).
# Slot 0 = A (APP), slot 1 = B (APP_b). UEFI retries an unmarked slot a few
# times and falls back by itself; `rauc status mark-good` marks it successful.
set -euo pipefail
nvbootctrl="${NVBOOTCTRL:-nvbootctrl}"
num_of() { case "$1" in A) echo 0 ;; B) echo 1 ;; *) echo "unknown bootname $1" >&2; exit 1 ;; esac; }
name_of() { case "$1" in 0) echo A ;; 1) echo B ;; *) echo "unknown slot $1" >&2; exit 1 ;; esac; }
case "${1:-}" in
    get-primary) name_of "$("$nvbootctrl" -t rootfs get-current-slot)" ;;
    get-current) name_of "$("$nvbootctrl" -t rootfs get-current-slot)" ;;
    set-primary) "$nvbootctrl" -t rootfs set-active-boot-slot "$(num_of "$2")" ;;
    get-state)
        if "$nvbootctrl" -t rootfs is-slot-marked-successful "$(num_of "$2")" >/dev/null 2>&1; then
            echo good; else echo bad; fi ;;
    set-state)
        if [ "$3" = good ]; then "$nvbootctrl" -t rootfs mark-boot-successful
        else "$nvbootctrl" -t rootfs set-slot-as-unbootable "$(num_of "$2")"; fi ;;
    *) echo "usage: $0 get-primary|set-primary SLOT|get-state SLOT|set-state SLOT good|bad|get-current" >&2; exit 2 ;;
esac
