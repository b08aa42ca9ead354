"""Serving the console over HTTPS (uvicorn): the certificate comes from
``[console] cert_file`` / ``key_file``, or, when those files do not exist yet,
is issued by central's CA (``alpr-central ca init``) for ``server_names``.

uvicorn's access log is off: request lines carry plates and case numbers in
their query strings, and those never go to the service log."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import uvicorn

from ..config import CentralConfig
from ..errors import ConfigError
from ..governance.audit import utcnow
from .app import create_app

logger = logging.getLogger(__name__)


def ensure_certificate(cfg: CentralConfig) -> tuple[str, str]:
    """(cert, key) paths for the console, issuing them from central's CA if missing."""
    c = cfg.console
    cert, key = Path(c.cert_file), Path(c.key_file)
    if cert.exists() and key.exists():
        return str(cert), str(key)
    if cert.exists() or key.exists():
        raise ConfigError(f"console.cert_file / console.key_file: one of {cert} and {key} is missing")
    if not Path(cfg.ca.key_file).exists():
        raise ConfigError("console.cert_file: no certificate, and no CA to issue one; set console.cert_file and "
                          "console.key_file, or run 'alpr-central ca init'")
    from ..fleet.ca import CertificateAuthority, read_passphrase
    from ..fleet.pki import write_public, write_secret
    ca = CertificateAuthority.load(cfg.ca.key_file, cfg.ca.cert_file, read_passphrase(cfg.ca.passphrase_file or None))
    key_pem, cert_pem = ca.issue(c.server_names[0], server_names=c.server_names, days=397)
    write_secret(key, key_pem)
    write_public(cert, cert_pem)
    logger.info("issued the console's server certificate for %s from central's CA", ", ".join(c.server_names))
    return str(cert), str(key)


class ConsoleServer:
    """uvicorn in a thread (for ``alpr-central run``, tests and the screenshot script)."""

    def __init__(self, cfg: CentralConfig, *, clock=utcnow, port: int | None = None) -> None:
        cert, key = ensure_certificate(cfg)
        self.app = create_app(cfg, clock=clock)
        self.port = port or cfg.console.port
        self.config = uvicorn.Config(self.app, host=cfg.console.bind, port=self.port, ssl_certfile=cert,
                                     ssl_keyfile=key, access_log=False, server_header=False, proxy_headers=False,
                                     log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="console", daemon=True)

    @property
    def url(self) -> str:
        return f"https://{self.config.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> "ConsoleServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the console did not start on {self.url}")
            time.sleep(0.05)
        logger.info("console serving on %s", self.url)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.app.close()


def serve(cfg: CentralConfig) -> None:
    """Serve until SIGTERM / Ctrl-C (uvicorn handles the signals)."""
    cert, key = ensure_certificate(cfg)
    app = create_app(cfg)
    try:
        uvicorn.run(app, host=cfg.console.bind, port=cfg.console.port, ssl_certfile=cert, ssl_keyfile=key,
                    access_log=False, server_header=False, proxy_headers=False, log_level="info",
                    timeout_graceful_shutdown=5)
    finally:
        app.close()
