#!/bin/bash
# First-boot enrollment: reads the enrollment file a field tech put on the FAT
# boot partition, runs `alpr-edge provision` with it, then erases it.
#
# The file holds KEY=VALUE lines (nothing else is read; it is never sourced,
# since anyone holding the card can write it):
#   ALPR_CENTRAL=https://central.example:8443
#   ALPR_ENROLLMENT_TOKEN=alpr1....
#   ALPR_CAMERA_URI=lane-2=rtsp://user:pass@10.1.1.20/stream1   (repeatable, optional)
#
# The token reaches alpr-edge through its environment (ALPR_ENROLLMENT_TOKEN),
# never its command line (visible in ps) and never the log. Camera URIs may
# carry credentials: they are passed as arguments to a root-only process and
# never logged.
#
# Exit: 0 enrolled (or nothing to do); 75 central unreachable (the file is
# kept, the unit retries); 1 refused (bad, spent or expired token, or a bad
# file: it is erased all the same, a person must bring a new token).
#
# ALPR_ROOT prefixes every path (tests run the hook in a temporary root).
set -euo pipefail
umask 077

root="${ALPR_ROOT:-}"
enroll_file="${root}${ALPR_ENROLL_FILE:-/boot/firmware/alpr-enroll.txt}"
config="${root}${ALPR_CONFIG:-/etc/alpr/edge.toml}"
credentials_dir="${root}${ALPR_CREDENTIALS_DIR:-/etc/alpr/credentials}"
state_dir="${root}${ALPR_STATE_DIR:-/var/lib/alpr/edge}"
user="${ALPR_USER:-alpr}"
done_marker="${state_dir}/.enrolled-by-firstboot"

log() { echo "alpr-firstboot: $*" >&2; }

erase() {
    # Overwrite, then unlink, then flush the file system. On flash media
    # (wear levelling) an overwrite is not a guarantee: the token is one-time
    # and short-lived, which is what really protects it.
    local f="$1"
    [ -e "$f" ] || return 0
    if command -v shred >/dev/null 2>&1; then
        shred --iterations=1 --zero --remove=unlink "$f" 2>/dev/null || rm -f -- "$f"
    else
        local size
        size=$(stat -c %s -- "$f")
        dd if=/dev/zero of="$f" bs=1 count="$size" conv=notrunc,fsync status=none 2>/dev/null || true
        rm -f -- "$f"
    fi
    sync -f "$(dirname -- "$f")" 2>/dev/null || sync
}

if [ ! -e "$enroll_file" ]; then
    log "no enrollment file; nothing to do"
    exit 0
fi

central=""
token=""
camera_args=()
lineno=0
bad=""
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    line="${line%$'\r'}"                       # written on Windows: CRLF
    case "$line" in
        ''|'#'*) continue ;;
        ALPR_CENTRAL=*) central="${line#ALPR_CENTRAL=}" ;;
        ALPR_ENROLLMENT_TOKEN=*) token="${line#ALPR_ENROLLMENT_TOKEN=}" ;;
        ALPR_CAMERA_URI=*) camera_args+=(--camera-uri "${line#ALPR_CAMERA_URI=}") ;;
        *) bad="line ${lineno}: unknown key (expected ALPR_CENTRAL, ALPR_ENROLLMENT_TOKEN or ALPR_CAMERA_URI)" ;;
    esac
done < "$enroll_file"

if [ -z "$bad" ] && [ -z "$token" ]; then bad="ALPR_ENROLLMENT_TOKEN is missing"; fi
if [ -z "$bad" ] && [[ "$central" != https://* ]]; then bad="ALPR_CENTRAL must be an https:// address"; fi
if [ -n "$bad" ]; then
    erase "$enroll_file"
    log "enrollment file refused ($bad); erased it. Write a corrected file with a fresh token."
    exit 1
fi

set +e
ALPR_ENROLLMENT_TOKEN="$token" alpr-edge provision \
    --central "$central" --config "$config" \
    --data-dir "$state_dir" --credentials-dir "$credentials_dir" --user "$user" \
    "${camera_args[@]}"
rc=$?
set -e
token=""

case "$rc" in
    0)
        erase "$enroll_file"
        : > "$done_marker"
        log "enrolled; enrollment file erased"
        if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1; then
            systemctl --no-block restart alpr-edge.service || true
        fi
        exit 0 ;;
    75)
        log "central unreachable (exit 75); keeping the enrollment file, will retry"
        exit 75 ;;
    *)
        erase "$enroll_file"
        log "enrollment refused (exit $rc); enrollment file erased. Bring a fresh token."
        exit 1 ;;
esac
