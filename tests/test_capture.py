"""Capture sources and the camera worker at the edges: credentials in URIs,
folders holding what is not an image, frames the recognizer refuses."""

from __future__ import annotations

import os
import threading
import types

import cv2
import numpy as np
import pytest

from edge_agent.capture import redact
from edge_agent.capture.folder import FolderSource
from edge_agent.errors import CaptureError


@pytest.mark.parametrize("uri, shown", [
    ("rtsp://admin:secret@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
    ("rtsp://admin:p@ss@cam/s", "rtsp://***@cam/s"),  # an '@' in the password
    ("http://10.0.0.5/video.cgi?user=admin&pwd=s3cret", "http://10.0.0.5/video.cgi?user=***&pwd=***"),
    ("rtsp://cam.local:554/live", "rtsp://cam.local:554/live"),
    ("/dev/video0", "/dev/video0"),
])
def test_stream_uris_are_shown_without_credentials(uri, shown):
    assert redact(uri) == shown
    assert "secret" not in redact(uri) and "s3cret" not in redact(uri) and "ss@" not in redact(uri)


def _camera(folder, loop=False):
    return types.SimpleNamespace(id="lane-1", uri=str(folder), loop=loop, fps=0)


def test_a_folder_skips_what_it_cannot_read_and_never_opens_a_fifo(tmp_path):
    img = np.full((64, 96, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), img)
    os.mkfifo(tmp_path / "b.jpg")  # would block imread for ever
    (tmp_path / "c.jpg").write_text("not an image")
    cv2.imwrite(str(tmp_path / "d.png"), img)
    src = FolderSource(_camera(tmp_path))
    src.open()
    frames = []
    while (frame := src.read()) is not None:
        frames.append(frame)
    assert len(frames) == 2 and src.skipped == 1


def test_a_looping_folder_without_one_readable_image_is_an_error_not_a_spin(tmp_path):
    (tmp_path / "x.jpg").write_text("not an image")
    src = FolderSource(_camera(tmp_path, loop=True))
    src.open()
    with pytest.raises(CaptureError, match="no readable image"):
        src.read()


def test_a_frame_the_recognizer_refuses_is_counted_and_the_camera_goes_on(monkeypatch, tmp_path):
    """A 1x1 image in a folder made the recognizer raise; the worker reopened the
    source from the start and read the same frame again, for ever."""
    from edge_agent import agent
    from edge_agent.reads import Detection
    from edge_agent.tracking import Tracker

    img = np.full((64, 96, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), img)
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "c.jpg"), img)
    (tmp_path / "d.jpg").write_text("not an image")

    class Reader:
        def recognize(self, frame):
            if frame.image.shape[0] < 8:
                raise ValueError("frame image has unsupported shape")
            return [Detection("7ABC123", 0.9, (1, 2, 3, 4))]

    class Writer:
        reads = 0

        def write(self, finals):
            Writer.reads += len(finals)

    camera = types.SimpleNamespace(id="lane-1", uri=str(tmp_path), loop=False, fps=0, source="folder")
    monkeypatch.setattr(agent.capture, "create", lambda cam: FolderSource(cam))
    worker = agent.CameraWorker(camera, Reader(), threading.Lock(), Tracker(), Writer())
    thread = threading.Thread(target=worker.run, args=(threading.Event(),))
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and worker.state == "finished"
    assert worker.frames == 3 and worker.bad_frames == 1 and Writer.reads == 1
    assert worker.unreadable == 1  # the folder's corrupt image, as status.json shows it


def test_status_with_a_cut_short_status_file_says_so_instead_of_crashing(tmp_path):
    """status.json is replaced atomically and now fsynced first; a file cut short
    anyway (an old agent, a copied file) gets a warning, not a traceback."""
    from click.testing import CliRunner

    from edge_agent.cli import main

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "status.json").write_text('{"device_id": "cam-1", "updated_at": "2026-')
    (tmp_path / "edge.toml").write_text(
        '[device]\nid = "cam-1"\ndata_dir = "data"\n[[cameras]]\nid = "front"\nsource = "file"\nuri = "c.avi"\n'
        '[sync]\nhost = "b"\ntls = false\ncentral_public_key = "c.pem"\n')
    result = CliRunner().invoke(main, ["status", "--config", str(tmp_path / "edge.toml")])
    assert result.exit_code == 3, result.output      # cannot tell: no readable status
    assert "unreadable" in result.output and "device id" in result.output
    assert "the agent's status file is unreadable" in result.output


def test_a_video_file_cut_short_is_reported(tmp_path, caplog):
    from edge_agent.capture.opencv import OpenCVSource

    path = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 96))
    for i in range(40):
        vw.write(np.full((96, 160, 3), i * 5, np.uint8))
    vw.release()
    whole = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[: len(whole) // 2])  # the header still announces 40 frames
    for video, truncated in ((path, False), (cut, True)):
        src = OpenCVSource(types.SimpleNamespace(id="lane-1", source="file", uri=str(video), loop=False,
                                                 width=0, height=0, fps=0))
        src.open()
        n = 0
        while src.read() is not None:
            n += 1
        src.close()
        assert src.truncated is truncated and (n == 40) is not truncated
    assert "truncated or damaged" in caplog.text
