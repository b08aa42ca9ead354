#!/bin/bash -e
# pi-gen substage (runs on the build host; ROOTFS_DIR is the image's root).
# ALPR_WHEEL: the agent's wheel (alpr_platform-*.whl) built from this repo.
# ALPR_RAUC_KEYRING: the OS signing CA certificate (firmware/rauc/keyring/README.md).
here="$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
firmware="$(cd "$here/../../.." && pwd)"
repo="$(cd "$firmware/.." && pwd)"
: "${ALPR_WHEEL:?set ALPR_WHEEL to the agent wheel (pip wheel --no-deps -w dist .)}"
: "${ALPR_RAUC_KEYRING:?set ALPR_RAUC_KEYRING to the OS signing CA certificate}"

# Files shared with the Jetson image, then the project's own units.
cp -a "$firmware/common/rootfs/." "${ROOTFS_DIR}/"
install -m 0644 "$repo/systemd/alpr-edge.service" "${ROOTFS_DIR}/etc/systemd/system/alpr-edge.service"
for unit in alpr-edge-update.service alpr-edge-update.path; do  # offered updates: the root-side step
  install -m 0644 "$repo/systemd/$unit" "${ROOTFS_DIR}/etc/systemd/system/$unit"
done
install -m 0644 "$ALPR_RAUC_KEYRING" "${ROOTFS_DIR}/etc/rauc/keyring.pem"
install -d -m 0755 "${ROOTFS_DIR}/opt/alpr/firmware"
install -m 0644 "$firmware/README.md" "${ROOTFS_DIR}/opt/alpr/firmware/README.md"
install -m 0644 "$repo/README.md" "${ROOTFS_DIR}/opt/alpr/README.md"
install -m 0644 "$ALPR_WHEEL" "${ROOTFS_DIR}/tmp/"

# Boot partition: camera, watchdog, read-only root.
cat "$firmware/rpi/boot/config.txt.append" >> "${ROOTFS_DIR}/boot/firmware/config.txt"
sed -i '1 s/$/ overlayroot=tmpfs:recurse=0 ro/' "${ROOTFS_DIR}/boot/firmware/cmdline.txt"
install -m 0644 "$firmware/rpi/fstab" "${ROOTFS_DIR}/etc/fstab"
