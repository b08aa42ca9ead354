"""Peak RSS of the edge agent during the demo workload: the generated clip
(1280x720, 10 fps) through capture, recognition, tracking, sealing, the outbox
and TLS sync to a real broker and collector.

    .venv/bin/python bench/bench_rss.py [--seconds 60] [--recognizer sidecar-oracle|tflite]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import Rig  # noqa: E402


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--recognizer", default="sidecar-oracle", choices=["sidecar-oracle", "tflite"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        rig = Rig(root, ["cam-rss"])
        rig.start_broker()
        rig.start_collectors(1)
        subprocess.run([sys.executable, "-m", "edge_agent", "sample", str(root / "clip")], check=True,
                       stdout=subprocess.DEVNULL)
        sidecar = str(root / "clip" / "sample.json") if args.recognizer == "sidecar-oracle" else None
        cfg = rig.edge_config("cam-rss", source_dir=root, sidecar=sidecar, clip=str(root / "clip" / "sample.avi"))
        edge = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config", str(cfg),
                                 "--log-level", "warning"])
        samples = []
        end = time.monotonic() + args.seconds
        while time.monotonic() < end and edge.poll() is None:
            samples.append(rss_kb(edge.pid, "VmRSS"))
            time.sleep(0.5)
        peak = rss_kb(edge.pid, "VmHWM") if edge.poll() is None else max(samples or [0])
        edge.terminate()
        edge.wait(30)
        stored = rig.stored()
        rig.stop()
        print(f"recognizer: {args.recognizer}; {args.seconds:.0f} s of 1280x720 at 10 fps; reads stored: {stored}")
        print(f"edge agent RSS: peak {peak / 1024:.1f} MB (VmHWM), steady {samples[-1] / 1024:.1f} MB")


if __name__ == "__main__":
    main()
