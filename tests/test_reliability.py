"""Short runs of the two reliability benches (bench/bench_faults.py and
bench/bench_fuzz.py), so a regression in the data path fails CI: every read
produced under random faults is stored exactly once, and no message from a
device crashes, hangs or stalls central. Each runs real processes (Mosquitto,
`alpr-central run`, agents) and takes about a minute. The full runs (1,000
faults, 100,000 messages) and their figures are in README.md, "Reliability".

Also: the wire contract fix the fuzz bench found (an audit record's seq must
fit SQLite's INTEGER)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.wire import MalformedMessage
from edge_agent.wire.audit import decode_audit_batch

BENCH = Path(__file__).resolve().parent.parent / "bench"

# Issue 26 fault 2 (the agent exited at start when its data directory was full) is
# fixed: the short campaign also kills the real agent and restarts it on a full
# disk, and asserts it never fails to start there.
RESTART_ON_FULL_DISK = True

# Found by the campaign and fixed: a device marked its audit records published when
# the BROKER acknowledged them, so records central failed to store were never sent
# again. Central now confirms them after storing (audit-ack); none may go missing.
AUDIT_RECORDS_ACKED_BY_CENTRAL = True


def _bench(script: str, *args: str, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--json"], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.stdout.strip(), f"{script} printed nothing; stderr:\n{proc.stderr[-4000:]}"
    try:
        figures = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"{script} did not print JSON:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    figures["_exit"] = proc.returncode
    return figures


def test_fault_campaign_loses_and_duplicates_nothing(mosquitto_bin):
    args = ["--faults", "60", "--seed", "26", "--drain-timeout", "120"]
    if RESTART_ON_FULL_DISK:
        args.append("--restart-on-full-disk")
    f = _bench("bench_faults.py", *args, timeout=400)
    summary = {k: f[k] for k in ("faults_by_kind", "produced", "stored", "lost", "duplicated", "extra", "missing",
                                 "misattributed", "evicted", "still_buffered", "drained", "process_exits")}
    assert f["faults"] == 60
    assert f["produced"] > 500, summary  # the devices really produced under the faults
    assert f["lost"] == 0 and f["missing"] == 0, summary
    assert f["duplicated"] == 0 and f["extra"] == 0 and f["misattributed"] == 0, summary
    assert f["drained"] and f["still_buffered"] == 0, summary
    assert f["store_integrity"] == "ok"
    assert f["collector_unexpected_errors"] == 0, f["tracebacks"]  # any message: reads, audit, status, health
    assert f["audit_records"] > 0
    if AUDIT_RECORDS_ACKED_BY_CENTRAL:
        assert f["audit_records_lost"] == 0, f["tracebacks"]
    # Killed and stopped processes come back; none ends on its own with an error, except
    # a collector restarted while central's disk is full, which exits 75 (temporary
    # failure: systemd starts it again). The real agent may be restarted on a full disk
    # by chance: issue 26 fault 2 until that fix is merged.
    for name, codes in f["process_exits"].items():
        allowed = {"0", "-9", "-15"} | ({"75"} if name.startswith("collector") else set())  # -15: SIGTERM
        # came before the process installed its handler (while starting)
        if name != "cam-real" or RESTART_ON_FULL_DISK:
            assert set(codes) <= allowed, (name, codes, f["tracebacks"])
    if RESTART_ON_FULL_DISK and f["fault2_enabled"]:
        assert f["agent_start_failures_on_full_disk"] == 0, f["tracebacks"]
    assert f["_exit"] == 0


def test_fuzzed_messages_crash_hang_and_stall_nothing(mosquitto_bin):
    f = _bench("bench_fuzz.py", "--messages", "5000", "--seed", "26", "--oversized-every", "2500",
               timeout=300)
    assert f["messages"] == 5000 and f["canaries_sent"] == 5
    assert f["crashes"] == [] and all(f["collectors_alive_at_end"]), f["crashes"]
    assert f["collector_exit_codes_on_sigterm"] == [0]
    assert f["unexpected_exceptions"] == 0, f["first_unexpected"]
    assert f["hangs"] == [], f["hangs"]
    assert f["canaries_acked"] == f["canaries_sent"]
    assert f["canary_reads_stored"] == f["canary_reads_acked"] == 5 * 5 + 1  # + the warm-up canary
    assert f["canary_device_reads_not_sent_by_it"] == 0 and f["reads_of_unknown_devices"] == 0
    assert f["fuzz_reads_stored"] > 0  # valid reads among the fuzz got through
    assert f["stored_reads_failing_revalidation"] == 0
    assert f["integrity_check"] == "ok"
    assert f["_exit"] == 0


@pytest.mark.parametrize("seq", [2 ** 63, 2 ** 70, 0, -1])
def test_audit_record_seq_must_fit_sqlite_integer(seq):
    record = {"device_id": "cam-a", "seq": seq, "at": "2026-12-04T00:00:00+00:00", "event": "cli", "detail": {},
              "prev_hash": "0" * 64, "key_id": "0" * 16, "public_key": "", "hash": "1" * 64, "signature": ""}
    payload = json.dumps({"v": 1, "device_id": "cam-a", "records": [record]}).encode()
    with pytest.raises(MalformedMessage):
        decode_audit_batch(payload)
    record["seq"] = 2 ** 63 - 1
    assert decode_audit_batch(json.dumps({"v": 1, "device_id": "cam-a", "records": [record]}).encode())[1]
