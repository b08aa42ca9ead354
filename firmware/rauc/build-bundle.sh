#!/bin/bash
# Build a signed RAUC bundle from the root and boot file systems of a built
# image (see firmware/README.md, "OS updates").
#
#   build-bundle.sh --version 1.4.0 --rootfs rootfs.ext4 --boot boot.vfat \
#       --cert signing.cert.pem --key signing.key.pem --keyring keyring.pem --out alpr-os-1.4.0.raucb
#
# The key may be a PKCS#11 URI (pkcs11:token=...;object=...) so it never
# leaves a hardware token.
set -euo pipefail
here="$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
version="" rootfs="" boot="" cert="" key="" keyring="" out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version="$2"; shift 2 ;;
        --rootfs) rootfs="$2"; shift 2 ;;
        --boot) boot="$2"; shift 2 ;;
        --cert) cert="$2"; shift 2 ;;
        --key) key="$2"; shift 2 ;;
        --keyring) keyring="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
for v in version rootfs boot cert key keyring out; do
    if [ -z "${!v}" ]; then echo "--$v is required" >&2; exit 2; fi
done
if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then echo "--version: MAJOR.MINOR.PATCH" >&2; exit 2; fi
work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT
build="$(date -u +%Y%m%d%H%M%S)"
sed -e "s/@VERSION@/$version/" -e "s/@BUILD@/$build/" "$here/manifest.raucm.in" > "$work/manifest.raucm"
cp -- "$rootfs" "$work/rootfs.ext4"
cp -- "$boot" "$work/boot.vfat"
rm -f -- "$out"
# The device's system.conf sets the checks a signature must pass (check-purpose=codesign).
conf="${ALPR_RAUC_CONF:-$here/../common/rootfs/etc/rauc/system.conf}"
rauc --conf="$conf" bundle --cert="$cert" --key="$key" --signing-keyring="$keyring" "$work" "$out"
rauc --conf="$conf" info --keyring="$keyring" "$out" >/dev/null
echo "$out"
