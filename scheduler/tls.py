"""TLS for `tessera serve`'s webhooks: the server's context, its reloading when the files rotate,
and the client context a replica uses to call another replica.

Only the standard `ssl` module is used. Every context is TLS 1.2 at least.

Rotation: cert-manager (through a mounted Secret, a symlink swap) replaces the files in place.
`ServingTLS` polls each file's (resolved path, inode, mtime, size) and, when one changed, builds
a whole new server context from the files. Only a context that loaded completely is used:
the context handed to uvicorn has an SNI callback that, at every handshake, moves the
connection onto the newest good context (`SSLObject.context = ...`), so new handshakes get the
new certificate (and the new client CA) and connections already open keep theirs. A broken
rotation (unreadable, not PEM, a key that does not match, a CA that does not parse) changes
nothing: the old certificate goes on being served and one `event=tls-reload-failed` line is
logged, once per state of the files.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass

log = logging.getLogger("tessera.tls")

DEFAULT_RELOAD_INTERVAL = 10.0  # seconds between two looks at the files

CERT_FLAG = "--tls-cert-file"
KEY_FLAG = "--tls-private-key-file"
CA_FLAG = "--client-ca-file"


class TLSFileError(Exception):
    """A certificate, key or CA file that cannot be used: names the flag, the file and the problem."""

    def __init__(self, flag: str, path: str, problem: str) -> None:
        self.flag = flag
        self.path = path
        self.problem = problem
        super().__init__(f"{flag} {path}: {problem}")


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """The PEM files of `--tls-cert-file`, `--tls-private-key-file` and `--client-ca-file`."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


# --- reading and checking the files ------------------------------------------------------------

def _read(flag: str, path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise TLSFileError(flag, path, "file not found") from None
    except IsADirectoryError:
        raise TLSFileError(flag, path, "is a directory, not a file") from None
    except PermissionError:
        raise TLSFileError(flag, path, "not readable (permission denied)") from None
    except OSError as e:
        raise TLSFileError(flag, path, f"cannot be read: {e.strerror or e}") from None
    return data.decode("ascii", errors="replace")


def _why(e: ssl.SSLError) -> str:
    """OpenSSL's reason without CPython's source location: "[PEM: NO_START_LINE] no start line"."""
    text = str(e.args[1]) if len(e.args) > 1 else str(e)
    return text.split(" (_ssl.c:")[0]


def _certificates(flag: str, path: str, text: str) -> None:
    """That `text` holds PEM certificates that all parse."""
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise TLSFileError(flag, path, "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=text)
    except ssl.SSLError:
        raise TLSFileError(flag, path, "a certificate in it does not parse (a PEM block that is not an X.509 "
                                       "certificate)") from None


def _no_password() -> str:
    raise ValueError("encrypted private keys are not supported")


def _load_chain(ctx: ssl.SSLContext, files: TLSFiles) -> None:
    """Loads the certificate and key into `ctx`, naming the file at fault when that fails."""
    cert = _read(CERT_FLAG, files.cert_file)
    _certificates(CERT_FLAG, files.cert_file, cert)
    key = _read(KEY_FLAG, files.key_file)
    if "PRIVATE KEY-----" not in key:
        raise TLSFileError(KEY_FLAG, files.key_file, "no PEM private key in it (expected -----BEGIN PRIVATE KEY-----)")
    if "ENCRYPTED" in key:
        raise TLSFileError(KEY_FLAG, files.key_file, "the private key is encrypted (not supported)")
    try:
        ctx.load_cert_chain(files.cert_file, files.key_file, password=_no_password)
    except ValueError as e:
        raise TLSFileError(KEY_FLAG, files.key_file, str(e)) from None
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e):
            raise TLSFileError(KEY_FLAG, files.key_file, f"does not match the certificate in {files.cert_file}") from None
        raise TLSFileError(KEY_FLAG, files.key_file, f"cannot load the key with the certificate: {_why(e)}") from None
    except OSError as e:  # the files changed between the reads above and this one
        raise TLSFileError(CERT_FLAG, files.cert_file, f"cannot be read: {e.strerror or e}") from None


def _load_ca(ctx: ssl.SSLContext, path: str) -> None:
    ca = _read(CA_FLAG, path)
    _certificates(CA_FLAG, path, ca)
    try:
        ctx.load_verify_locations(cadata=ca)
    except ssl.SSLError as e:  # pragma: no cover - _certificates parsed the same text
        raise TLSFileError(CA_FLAG, path, f"does not parse: {_why(e)}") from None


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """A server context serving `files.cert_file`/`key_file`; with `client_ca_file`, a client
    certificate signed by that CA is required (ssl.CERT_REQUIRED). Raises TLSFileError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(["http/1.1"])
    _load_chain(ctx, files)
    if files.client_ca_file is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_ca(ctx, files.client_ca_file)
    return ctx


def peer_client_context(files: TLSFiles) -> ssl.SSLContext:
    """The client context for one replica calling another's webhooks (the /bind forwarded to the
    leader): presents this replica's own certificate and key as its client certificate, so it
    passes the peer's `--client-ca-file` check (the certificate needs the `client auth` usage as
    well as `server auth`); verifies the peer's certificate against `files.client_ca_file` when
    given, else against the system trust store; does not check the host name, since replicas are
    reached by pod IP and any certificate the CA signed is a peer. TLS 1.2 at least.
    Raises TLSFileError naming the file at fault."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_chain(ctx, files)
    if files.client_ca_file is not None:
        _load_ca(ctx, files.client_ca_file)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx


def check_flags(cert_file: str | None, key_file: str | None, client_ca_file: str | None,
                insecure_http: bool) -> TLSFiles | None:
    """The TLS files the flags name, or None for `--insecure-http`; a ValueError saying what is
    wrong with the combination (the files themselves are checked by `ServingTLS`)."""
    if insecure_http:
        given = [f for f, v in ((CERT_FLAG, cert_file), (KEY_FLAG, key_file), (CA_FLAG, client_ca_file)) if v]
        if given:
            raise ValueError(f"--insecure-http serves plain HTTP and cannot be used with {' and '.join(given)}")
        return None
    if cert_file and not key_file:
        raise ValueError(f"{CERT_FLAG} needs {KEY_FLAG} (the certificate's private key)")
    if key_file and not cert_file:
        raise ValueError(f"{KEY_FLAG} needs {CERT_FLAG} (the certificate of that key)")
    if not cert_file or not key_file:
        if client_ca_file:
            raise ValueError(f"{CA_FLAG} needs {CERT_FLAG} and {KEY_FLAG} (the webhooks' own certificate)")
        raise ValueError(f"the webhooks need TLS: pass {CERT_FLAG} and {KEY_FLAG} (and {CA_FLAG} to require client "
                         "certificates), or --insecure-http to serve plain HTTP")
    return TLSFiles(cert_file, key_file, client_ca_file or None)


# --- rotation ----------------------------------------------------------------------------------

Signature = tuple[tuple[object, ...], ...]


def _stat(path: str) -> tuple[object, ...]:
    try:
        st = os.stat(path)
        return (os.path.realpath(path), st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError as e:
        return (path, "error", e.errno)


def signature(files: TLSFiles) -> Signature:
    """What changes when a file is rotated: per file, its resolved path, inode, mtime and size."""
    paths = [files.cert_file, files.key_file] + ([files.client_ca_file] if files.client_ca_file else [])
    return tuple(_stat(p) for p in paths)


class ServingTLS:
    """The webhooks' TLS: `context` is handed to the HTTP server once; `watch()` (a task in the
    server's event loop) reloads the files when they change. `reloads`, `failures` and
    `last_error` tell how rotation went. Raises TLSFileError when the files are unusable at start."""

    def __init__(self, files: TLSFiles, interval: float = DEFAULT_RELOAD_INTERVAL) -> None:
        self.files = files
        self.interval = interval
        self.reloads = 0  # rotations taken into use
        self.failures = 0  # rotations refused (the previous certificate stays in use)
        self.last_error: str | None = None  # why the files, as they are now, are refused; None when in use
        self._seen = signature(files)
        self.context = server_context(files)
        self.context.sni_callback = self._pick
        self._current = self.context
        self._peers: list[ssl.SSLContext] = []

    @property
    def current(self) -> ssl.SSLContext:
        """The context new handshakes are served with."""
        return self._current

    def _pick(self, conn: ssl.SSLObject, _server_name: str | None, base: ssl.SSLContext) -> None:
        # Called by OpenSSL on every ClientHello (with or without SNI), before a certificate is chosen.
        current = self._current
        if current is not base:
            conn.context = current

    def peer_context(self) -> ssl.SSLContext:
        """`peer_client_context(self.files)`, kept up to date: every good rotation loads the new
        certificate, key and CA into it (in place, from the event loop that runs `watch`)."""
        ctx = peer_client_context(self.files)
        self._peers.append(ctx)
        return ctx

    def check(self) -> bool | None:
        """One look at the files: None when unchanged since the last look, True when the new files
        are in use, False when they were refused (logged once; the previous ones stay in use)."""
        now = signature(self.files)
        if now == self._seen:
            return None
        self._seen = now
        try:
            fresh = server_context(self.files)
        except TLSFileError as e:
            return self._refused(e)
        self._current = fresh
        try:
            for peer in self._peers:
                _load_chain(peer, self.files)
                if self.files.client_ca_file is not None:
                    _load_ca(peer, self.files.client_ca_file)
        except TLSFileError as e:  # the files changed again since `fresh` loaded them: look again next time
            self._seen = ()
            return self._refused(e)
        self.reloads += 1
        self.last_error = None
        log.info("event=tls-reloaded cert=%s key=%s client_ca=%s reloads=%d", self.files.cert_file, self.files.key_file,
                 self.files.client_ca_file or "-", self.reloads)
        return True

    def _refused(self, e: TLSFileError) -> bool:
        self.failures += 1
        self.last_error = str(e)
        log.error("event=tls-reload-failed file=%s error=%r", e.path, e.problem)
        return False

    async def watch(self) -> None:
        """Looks at the files every `interval` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # never let the watcher die silently
                log.exception("event=tls-watch-error")
