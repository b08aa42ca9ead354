"""``alpr-central``: the command line of the central collector (a thin shell
over the library that turns its errors into messages and exit codes).

Exit codes: 0 ok, 1 operational error, 2 usage, 75 temporary failure
(broker/database unreachable: retry), 78 configuration error.

One module per group of commands; :mod:`.common` and :mod:`.session` hold what
they share, so no command module imports another.
"""

from __future__ import annotations

from . import (console, db, devices, fleet_config, fleet_health, governance, hotlist, init, models, reads, release,
               retention, rollout, sharing)
from .main import keys, main

for _command in (governance.COMMANDS + retention.COMMANDS + sharing.COMMANDS + hotlist.COMMANDS
                 + release.COMMANDS + models.COMMANDS + reads.COMMANDS):
    main.add_command(_command)
keys.add_command(sharing.keys_init_signing)
main.add_command(console.serve)
main.add_command(init.init)
governance.user_group.add_command(console.user_passwd)
governance.user_group.add_command(console.user_unlock)
for _group in (devices.ca_group, devices.enroll_group, devices.device_group, devices.business_group,
               devices.broker_group, db.db_group):
    main.add_command(_group)
for _command in fleet_health.COMMANDS:
    devices.device_group.add_command(_command)
devices.device_group.add_command(fleet_config.config_group)  # device config init-key / push / status
for _command in rollout.RELEASE_COMMANDS:  # staged rollouts over MQTT
    release.release_group.add_command(_command)
devices.device_group.add_command(rollout.group_group)

__all__ = ["main"]
