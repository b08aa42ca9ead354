#!/bin/bash
# After an OS (RAUC) update the new root slot is only being tried. Commit it
# once the agent on it is healthy (up, camera frames, sync connected: the
# same check as an application update); if it is not, mark it bad and reboot
# into the previous slot. On a boot of a committed slot it does nothing, so
# an unplugged camera or a broker outage never makes a device reboot in a loop.
#
# ALPR_RAUC_CONF, ALPR_CONFIG, ALPR_COMMIT_TIMEOUT: tests and unusual layouts.
set -euo pipefail
conf="${ALPR_RAUC_CONF:-/etc/rauc/system.conf}"
config="${ALPR_CONFIG:-/etc/alpr/edge.toml}"
timeout="${ALPR_COMMIT_TIMEOUT:-600}"

backend=$(awk -F= '$1 == "bootloader-custom-backend" { print $2 }' "$conf")
if [ -z "$backend" ]; then echo "rauc-commit: no bootloader-custom-backend in $conf" >&2; exit 1; fi
slot=$("$backend" get-current)
state=$("$backend" get-state "$slot")
if [ "$state" = good ]; then
    echo "rauc-commit: slot $slot is committed; nothing to do"
    exit 0
fi
echo "rauc-commit: slot $slot is on trial; waiting up to ${timeout}s for a healthy agent"
if alpr-edge update health --config "$config" --timeout "$timeout"; then
    rauc status mark-good booted
    echo "rauc-commit: slot $slot is healthy and committed"
    exit 0
fi
echo "rauc-commit: the agent is not healthy on slot $slot; marking it bad and rebooting into the previous slot" >&2
rauc status mark-bad booted || true
systemctl reboot
exit 1
