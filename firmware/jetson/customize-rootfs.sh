#!/bin/bash
# Apply the ALPR camera customisation to an NVIDIA L4T (Jetson Linux 36.x,
# Ubuntu 22.04) sample root file system before flashing (firmware/README.md,
# "Jetson"). Run on an x86-64 Ubuntu host as root, with qemu-user-static and
# binfmt-support installed:
#
#   customize-rootfs.sh /path/to/Linux_for_Tegra/rootfs /path/to/alpr_platform-X.Y.Z-py3-none-any.whl keyring.pem
set -euo pipefail
rootfs="${1:?usage: customize-rootfs.sh ROOTFS WHEEL KEYRING}"
wheel="${2:?usage: customize-rootfs.sh ROOTFS WHEEL KEYRING}"
keyring="${3:?usage: customize-rootfs.sh ROOTFS WHEEL KEYRING}"
here="$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
firmware="$(cd "$here/.." && pwd)"
repo="$(cd "$firmware/.." && pwd)"
[ -x "$rootfs/bin/bash" ] || { echo "$rootfs is not a root file system" >&2; exit 1; }

cp -a "$firmware/common/rootfs/." "$rootfs/"
install -m 0644 "$repo/systemd/alpr-edge.service" "$rootfs/etc/systemd/system/alpr-edge.service"
for unit in alpr-edge-update.service alpr-edge-update.path; do  # offered updates: the root-side step
  install -m 0644 "$repo/systemd/$unit" "$rootfs/etc/systemd/system/$unit"
done
install -m 0644 "$here/rauc-system.conf" "$rootfs/etc/rauc/system.conf"
install -m 0755 "$here/rauc-nvbootctrl-backend.sh" "$rootfs/usr/lib/alpr/rauc-nvbootctrl-backend.sh"
install -m 0644 "$keyring" "$rootfs/etc/rauc/keyring.pem"
install -m 0644 "$here/fstab" "$rootfs/etc/fstab"
install -d -m 0755 "$rootfs/opt/alpr/firmware"
install -m 0644 "$firmware/README.md" "$rootfs/opt/alpr/firmware/README.md"
install -m 0644 "$wheel" "$rootfs/tmp/"

cleanup() { for m in dev/pts dev proc sys; do umount "$rootfs/$m" 2>/dev/null || true; done; }
trap cleanup EXIT
for m in proc sys dev dev/pts; do mount --bind "/$m" "$rootfs/$m"; done
chroot "$rootfs" /bin/bash -e <<'CHROOT'
export DEBIAN_FRONTEND=noninteractive
apt-get update
# Ubuntu's chrony/rauc/overlayroot; the CSI camera goes through nvargus (GStreamer).
apt-get install -y --no-install-recommends chrony rauc overlayroot python3-venv \
    gstreamer1.0-tools nvidia-l4t-gstreamer
python3 -m venv /opt/alpr/.venv
whl=$(ls /tmp/alpr_platform-*.whl)
/opt/alpr/.venv/bin/pip install --no-cache-dir "${whl}[edge]"
rm -f -- "$whl"
systemd-sysusers
rm -rf /etc/alpr && ln -s /var/lib/alpr/etc /etc/alpr
rm -rf /var/log/journal && ln -s /var/lib/alpr/journal /var/log/journal
install -d -m 0755 /var/lib/alpr
# Read-only root with a tmpfs overlay; the data partition is not overlaid.
echo 'overlayroot="tmpfs:recurse=0"' > /etc/overlayroot.local.conf
systemctl enable alpr-firstboot.service alpr-edge.service alpr-edge-update.path rauc-mark-good.service chrony.service chrony-wait.service nvargus-daemon.service
systemctl mask apt-daily.timer apt-daily-upgrade.timer
apt-get clean
CHROOT
echo "customised $rootfs"
