#!/bin/bash -e
# pi-gen substage, inside the image (chroot, arm64 under qemu-user).
set -o pipefail

# The agent: a venv in the read-only root (the factory release). picamera2
# comes from apt, hence --system-site-packages.
python3 -m venv --system-site-packages /opt/alpr/.venv
wheel=$(ls /tmp/alpr_platform-*.whl)
/opt/alpr/.venv/bin/pip install --no-cache-dir "${wheel}[edge]"
rm -f -- "$wheel"

# The account and the directories of the data partition (again at every boot).
systemd-sysusers
# /etc/alpr lives on the data partition: config, identity, device key.
rm -rf /etc/alpr
ln -s /var/lib/alpr/etc /etc/alpr
# Persistent journal on the data partition, bounded (journald.conf.d/10-alpr.conf).
rm -rf /var/log/journal
ln -s /var/lib/alpr/journal /var/log/journal
install -d -m 0755 /var/lib/alpr

systemctl enable alpr-firstboot.service alpr-edge.service alpr-edge-update.path rauc-mark-good.service
systemctl enable chrony.service chrony-wait.service
# Nothing on a pole needs these.
systemctl disable --now userconfig.service 2>/dev/null || true
systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer
