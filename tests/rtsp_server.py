"""A real RTSP server on loopback for the tests: GStreamer's RTSP server streaming a video file's H.264 as is.

Run by Debian's ``/usr/bin/python3`` (it needs python3-gi and
gir1.2-gst-rtsp-server-1.0, which the venv cannot import)::

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --file video.mp4 [--user U --password P]

serves ``rtsp://127.0.0.1:8554/live`` at the file's own frame rate; each client
gets the file from its start. ``RtspServer`` below starts it as a
subprocess from pytest, and can kill and restart it.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"


def serve(port: int, file: str, user: str | None, password: str | None) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    # Pass the file's H.264 through (no re-encode: cheap on a 2-core machine).
    factory.set_launch(f'( filesrc location="{file}" ! qtdemux ! h264parse config-interval=-1 ! rtph264pay name=pay0 '
                       f'pt=96 )')
    factory.set_shared(False)
    if user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role_from_structure(Gst.Structure.new_from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print(f"ready rtsp://127.0.0.1:{port}/live", flush=True)
    GLib.MainLoop().run()


def available() -> str | None:
    """Why the server cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "GStreamer RTSP server for Python missing (apt install python3-gi gir1.2-gst-rtsp-server-1.0 " \
               "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)"
    return None


class RtspServer:
    """The server above as a subprocess on ``127.0.0.1:port``; ``kill()`` and ``start()`` again for outage tests."""

    def __init__(self, port: int, file: Path, user: str | None = None, password: str | None = None):
        self.port = port
        self.file = file
        self.user, self.password = user, password
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        cred = f"{self.user}:{self.password}@" if self.user else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}/live"

    def start(self, timeout: float = 20.0) -> RtspServer:
        args = [SYSTEM_PYTHON, __file__, "--port", str(self.port), "--file", str(self.file)]
        if self.user:
            args += ["--user", self.user, "--password", self.password or ""]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"RTSP server exited: {self.proc.stdout.read() if self.proc.stdout else ''}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"RTSP server did not listen on port {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: the camera vanishes without a goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    serve(args.port, str(Path(args.file).resolve()), args.user, args.password)


if __name__ == "__main__":
    main()
