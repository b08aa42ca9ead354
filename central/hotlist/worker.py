"""The hotlist matcher process that :class:`~central.hotlist.service.HotlistProcess`
starts (``python -m central.hotlist.worker``; not a command for people).

stdin: a 4-byte big-endian length and the pickled settings (store path, the
``[hotlist]`` config, log level) from the parent, then one byte per wake-up;
end of file (the parent closed the pipe or is gone) stops it, as SIGTERM
does; SIGINT and SIGHUP (sent to the terminal's whole process group) are
left to the parent. stdout: a ``counters <reads> <hits> <same_pass> <upgraded>`` line
whenever they change. The log goes to stderr like the parent's.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import sys
import threading

from .service import HotlistService

logger = logging.getLogger(__name__)


def _read_exactly(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError("the parent closed the pipe before sending the settings")
        data += chunk
    return data


def main() -> int:
    fd = sys.stdin.fileno()
    (size,) = struct.unpack(">I", _read_exactly(fd, 4))
    settings = pickle.loads(_read_exactly(fd, size))  # from the parent process only: a pipe nobody else holds
    logging.basicConfig(level=settings["log_level"] or logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ended = threading.Event()
    # Ctrl-C and a terminal's hang-up reach the whole process group: the parent decides and
    # closes the pipe (this process then finishes its round); SIGTERM alone stops it here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: ended.set())
    service = HotlistService(settings["path"], settings["cfg"]).start()

    def wakes() -> None:
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:  # end of file: stop
                ended.set()
                service.matcher.wake()
                return
            service.matcher.wake()

    threading.Thread(target=wakes, name="hotlist-wakes", daemon=True).start()
    last = None
    try:
        while not ended.wait(0.2):
            last = _report(service, last)
    finally:
        service.stop()
        _report(service, last)
    return 0


def _report(service: HotlistService, last):
    now = tuple(service.counters.values())
    if now != last:
        try:
            sys.stdout.write("counters " + " ".join(map(str, now)) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass
    return now


if __name__ == "__main__":
    sys.exit(main())
