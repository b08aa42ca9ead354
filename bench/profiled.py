"""Run a Python module with every thread under cProfile; write the merged
statistics when it exits (SIGTERM included: the module's own handler must stop it).

    python bench/profiled.py OUT.prof -m central run --config ...
    python -c "import pstats; pstats.Stats('OUT.prof').sort_stats('tottime').print_stats(30)"

Used by ``bench_catchup.py --profile DIR``. cProfile alone sees only the main
thread; the collector's work happens in paho's network thread and its writer
thread, the agent's in its sync and camera threads.
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import threading

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
_run = threading.Thread.run


def _profiled_run(self) -> None:
    profile = cProfile.Profile()
    with _lock:
        _profiles.append(profile)
    profile.enable()
    try:
        _run(self)
    finally:
        profile.disable()


def main() -> None:
    out, rest = sys.argv[1], sys.argv[2:]
    if len(rest) < 2 or rest[0] != "-m":
        sys.exit(__doc__)
    threading.Thread.run = _profiled_run
    main_profile = cProfile.Profile()
    _profiles.append(main_profile)
    sys.argv = rest[1:]
    main_profile.enable()
    try:
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    finally:
        main_profile.disable()
        import pstats
        with _lock:
            stats = pstats.Stats(main_profile)
            for profile in _profiles[1:]:
                try:
                    stats.add(profile)
                except TypeError:  # a thread that never ran
                    pass
        stats.dump_stats(out)


if __name__ == "__main__":
    main()
