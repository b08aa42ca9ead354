"""MQTT topic layout (version 1).

``alpr/v1/devices/<device_id>/reads``   device -> central, QoS 1, batch frames
``alpr/v1/devices/<device_id>/ack``     central -> device, QoS 1, JSON acks
``alpr/v1/devices/<device_id>/status``  device, retained: ``online`` / ``offline`` (last will)
``alpr/v1/devices/<device_id>/audit``   device -> central, QoS 1, signed audit records (:mod:`.audit`)
``alpr/v1/devices/<device_id>/health``  device -> central, QoS 1, heartbeat (:mod:`.health`)
``alpr/v1/devices/<device_id>/audit-ack`` central -> device, QoS 1, audit records central holds
``alpr/v1/devices/<device_id>/config``  central -> device, QoS 1, retained: signed configuration (:mod:`.devconfig`)
``alpr/v1/devices/<device_id>/config-state`` device -> central, QoS 1, retained: what the device did with it
``alpr/v1/devices/<device_id>/update/<leaf>`` update offers, chunk fetches, chunks, state reports (:mod:`.update`)

Collectors subscribe through an MQTT v5 shared subscription
(``$share/<group>/alpr/v1/devices/+/reads``) so several can split the load.
The broker ACL lets a device write only under its own prefix.
"""

from __future__ import annotations

import dataclasses
import re

DEVICE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")


def validate_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
        raise ValueError(
            "device id must be 1-63 characters of lower-case letters, digits and '-', "
            "starting with a letter or digit"
        )
    return device_id


@dataclasses.dataclass(frozen=True)
class Topics:
    prefix: str = "alpr/v1/devices"

    def reads(self, device_id: str) -> str:
        return f"{self.prefix}/{validate_device_id(device_id)}/reads"

    def ack(self, device_id: str) -> str:
        return f"{self.prefix}/{validate_device_id(device_id)}/ack"

    def status(self, device_id: str) -> str:
        return f"{self.prefix}/{validate_device_id(device_id)}/status"

    def audit(self, device_id: str) -> str:
        return f"{self.prefix}/{validate_device_id(device_id)}/audit"

    def audit_ack(self, device_id: str) -> str:
        return f"{self.prefix}/{validate_device_id(device_id)}/audit-ack"

    def health(self, device_id: str) -> str:
        return f"{self.prefix}/{validate_device_id(device_id)}/health"

    def health_subscription(self, share_group: str | None) -> str:
        topic = f"{self.prefix}/+/health"
        return f"$share/{share_group}/{topic}" if share_group else topic

    def health_device_of(self, topic: str) -> str | None:
        """The device id of a ``.../<device>/health`` topic, or None."""
        return self._device_of(topic, "health")

    # -- remote configuration (:mod:`.devconfig`) --
    def config(self, device_id: str) -> str:
        return f"{self.prefix}/{validate_device_id(device_id)}/config"

    def config_state(self, device_id: str) -> str:
        return f"{self.prefix}/{validate_device_id(device_id)}/config-state"

    def config_state_subscription(self) -> str:
        """Not shared: every collector gets the retained states."""
        return f"{self.prefix}/+/config-state"

    def config_state_device_of(self, topic: str) -> str | None:
        return self._device_of(topic, "config-state")

    def _device_of(self, topic: str, leaf: str) -> str | None:
        head, sep, rest = topic.partition(self.prefix + "/")
        parts = rest.split("/")
        if head or not sep or len(parts) != 2 or parts[1] != leaf or not DEVICE_ID_RE.match(parts[0]):
            return None
        return parts[0]

    def audit_subscription(self, share_group: str | None) -> str:
        topic = f"{self.prefix}/+/audit"
        return f"$share/{share_group}/{topic}" if share_group else topic

    def audit_device_of(self, topic: str) -> str | None:
        """The device id of a ``.../<device>/audit`` topic, or None."""
        head, sep, rest = topic.partition(self.prefix + "/")
        parts = rest.split("/")
        if head or not sep or len(parts) != 2 or parts[1] != "audit" or not DEVICE_ID_RE.match(parts[0]):
            return None
        return parts[0]

    def reads_subscription(self, share_group: str | None) -> str:
        topic = f"{self.prefix}/+/reads"
        return f"$share/{share_group}/{topic}" if share_group else topic

    def device_of(self, topic: str) -> str | None:
        """The device id of a ``.../<device>/reads`` topic, or None if the topic
        is not one of ours (or names an invalid device id)."""
        head, sep, rest = topic.partition(self.prefix + "/")
        if head or not sep:
            return None
        parts = rest.split("/")
        if len(parts) != 2 or parts[1] != "reads" or not DEVICE_ID_RE.match(parts[0]):
            return None
        return parts[0]

    # -- updates (edge_agent/wire/update.py): <prefix>/<device>/update/<leaf> ---------------
    UPDATE_TO_DEVICE = ("offer", "chunk")      # central -> device
    UPDATE_FROM_DEVICE = ("fetch", "state")    # device -> central

    def update(self, device_id: str, leaf: str) -> str:
        if leaf not in self.UPDATE_TO_DEVICE + self.UPDATE_FROM_DEVICE:
            raise ValueError(f"no update topic {leaf!r}")
        return f"{self.prefix}/{validate_device_id(device_id)}/update/{leaf}"

    def update_subscription(self, leaf: str, share_group: str | None) -> str:
        topic = f"{self.prefix}/+/update/{leaf}"
        return f"$share/{share_group}/{topic}" if share_group else topic

    def update_of(self, topic: str) -> tuple[str, str] | None:
        """(device id, leaf) of a ``.../<device>/update/<leaf>`` topic, or None."""
        head, sep, rest = topic.partition(self.prefix + "/")
        parts = rest.split("/")
        if (head or not sep or len(parts) != 3 or parts[1] != "update"
                or parts[2] not in self.UPDATE_TO_DEVICE + self.UPDATE_FROM_DEVICE or not DEVICE_ID_RE.match(parts[0])):
            return None
        return parts[0], parts[2]
