"""``alpr-central demo`` as a new user meets it: stopped by SIGTERM, SIGINT or
SIGHUP (at any point) it leaves no child running (the hotlist matcher
process among them); it leaves a central config
and a demo account behind so ``alpr-central query`` finds its reads; a second
run shows only its own reads; it ends on a summary in words."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from central.cli.demo import summary


def _children(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid`` with its command line (from /proc)."""
    parents: dict[int, int] = {}
    cmd: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            cmd[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = {}, [pid]
    while frontier:
        p = frontier.pop()
        for child, parent in parents.items():
            if parent == p and child not in found:
                found[child] = cmd.get(child, "")
                frontier.append(child)
    return found


def _alive(pid: int, cmdline: str) -> bool:
    """The process is still running (not a zombie) and is the same program."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        now = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return state != "Z" and now == cmdline


def _start(demo_dir: Path, *extra: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "central", "demo", "--dir", str(demo_dir), "--vehicles", "3",
                             "--recognizer", "sidecar-oracle", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    proc.reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    proc.reader.start()   # join it after the exit: the last lines may still be in the pipe
    return proc, lines


def _wait_for(proc, lines, predicate, timeout=90):
    deadline = time.monotonic() + timeout
    while not any(predicate(line) for line in lines):
        assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
        time.sleep(0.1)


def _read_lines(lines):
    return [line for line in lines if line[:4].isdigit()]


@pytest.mark.parametrize("sig,when", [(signal.SIGTERM, "reads"), (signal.SIGINT, "reads"),
                                      (signal.SIGHUP, "reads"), (signal.SIGTERM, "setup")])
def test_a_signal_stops_every_child(tmp_path, mosquitto_bin, sig, when):
    proc, lines = _start(tmp_path / "demo")
    children: dict[int, str] = {}
    try:
        if when == "setup":   # as soon as the broker runs: the agent and console are not started yet
            _wait_for(proc, lines, lambda line: line.startswith("broker"))
        else:
            _wait_for(proc, lines, lambda line: line[:4].isdigit())
            # the listed plate's hit shows live (matched in the hotlist process)
            _wait_for(proc, lines, lambda line: line.startswith("*** HIT #"))
        children = _children(proc.pid)
        if when == "reads":
            assert any("mosquitto" in c for c in children.values()), children
            assert any("edge_agent" in c for c in children.values()), children
            # the hotlist matcher runs in its own process, as under 'alpr-central run'
            assert any("central.hotlist.worker" in c for c in children.values()), children
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:   # the test failed before the signal: its children go with it
            children = children or _children(proc.pid)
            proc.kill()
            proc.wait()
    time.sleep(0.2)
    proc.reader.join(timeout=30)   # every line the demo printed before it exited (a loaded machine lags)
    left = {pid: c for pid, c in children.items() if _alive(pid, c)}
    for pid in left:   # leave nothing behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"children left running after {sig.name}: {left}"
    assert proc.returncode == 0, "".join(lines)
    out = "".join(lines)
    assert "stopped. central stored" in out and "Traceback" not in out, out


def test_demo_leaves_a_searchable_central_and_a_second_run_shows_only_new_reads(tmp_path, mosquitto_bin):
    demo = tmp_path / "demo"
    proc, lines = _start(demo, "--duration", "10", "--no-console")
    assert proc.wait(timeout=120) == 0, "".join(lines)
    time.sleep(0.2)
    out = "".join(lines)
    first = {line.split()[-1] for line in _read_lines(lines)}
    assert first, out
    # the summary is words, not a dict of counters
    assert "{" not in out.split("stopping ...")[1], out
    assert re.search(r"stopped\. central stored \d+ reads? this run \(\d+ in all\)", out), out
    # the printed search command, run literally, finds the demo's reads
    command = re.search(r"search them: (alpr-central query .*)", out).group(1)
    args = command.split()[1:]
    assert args[args.index("--config") + 1] == str(demo / "central.toml")
    assert (demo / "demo-investigator.token").stat().st_mode & 0o777 == 0o600
    found = subprocess.run([sys.executable, "-m", "central", *args, "--json"], capture_output=True, text=True,
                           timeout=60)
    assert found.returncode == 0, found.stdout + found.stderr
    assert first <= {line.split('"read_id": "')[1].split('"')[0] for line in found.stdout.splitlines()}

    proc, lines = _start(demo, "--duration", "6", "--no-console")
    assert proc.wait(timeout=120) == 0, "".join(lines)
    time.sleep(0.2)
    second = {line.split()[-1] for line in _read_lines(lines)}
    assert not (second & first), "a second run reprinted earlier reads as new"
    assert "read(s) from earlier runs are already stored" in "".join(lines)


def test_the_edge_agents_output_goes_to_its_log_not_the_table(tmp_path, mosquitto_bin):
    # the tflite recognizer: the TFLite runtime prints its XNNPACK line on the agent's stderr
    proc = subprocess.run([sys.executable, "-m", "central", "demo", "--dir", str(tmp_path / "demo"),
                           "--vehicles", "2", "--duration", "12", "--no-console"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TensorFlow" not in proc.stdout + proc.stderr
    assert (tmp_path / "demo" / "edge.log").exists()
    confidences = [float(line.split()[2]) for line in proc.stdout.splitlines() if line[:4].isdigit()]
    assert confidences and all(0 < c <= 1 for c in confidences)


def test_summary_in_words():
    lines = summary(3, 10, {"messages": 2, "reads_stored": 3, "rejected.bad-envelope": 1}, 1)
    assert lines[0] == "stopped. central stored 3 reads this run (10 in all), from 2 message(s); 1 hotlist hit this run."
    assert lines[1] == "rejected: 1 bad envelope"
