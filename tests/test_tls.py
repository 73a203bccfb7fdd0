"""TLS for `tessera serve`'s webhooks: client certificates, rotation without restart, a broken
rotation keeping the old certificate, every bad file at start refused with one line, and the
client context replicas call each other with. Certificates are made here with `cryptography`."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import pathlib
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi import FastAPI, Response

from scheduler.serve import start_http
from scheduler.tls import ServingTLS, TLSFileError, TLSFiles, peer_client_context, server_context
from tests.apiserver import FakeApiServer
from tests.live import gpu_cluster
from tests.test_serve_cli import free_port, kubeconfig, serve

CAP = 60.0  # seconds: a cap for a broken run, never the condition waited for
LOCAL = "127.0.0.1"


# --- certificates ------------------------------------------------------------------------------

@dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "tessera-test-ca") -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return Issued(key, cert)


def issue(ca: Issued, cn: str, ip: str | None = LOCAL, dns: str = "tessera.tessera-system.svc") -> Issued:
    """A leaf for both ends (server auth and client auth), as a replica's certificate is."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(dns)]
    if ip is not None:
        names.append(x509.IPAddress(ipaddress.ip_address(ip)))
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca.key, hashes.SHA256()))
    return Issued(key, cert)


class Mounted:
    """A Secret volume as the kubelet lays it out: tls.crt -> ..data/tls.crt, ..data -> ..<version>;
    a rotation writes a new version directory and swaps ..data atomically (what cert-manager's
    renewal looks like from inside the pod)."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.version = 0

    def path(self, name: str) -> pathlib.Path:
        return self.root / name

    def write(self, **files: bytes) -> None:
        self.version += 1
        version = self.root / f"..v{self.version}"
        version.mkdir()
        for name, data in files.items():
            (version / name.replace("_", ".")).write_bytes(data)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        os.replace(tmp, self.root / "..data")
        for name in files:
            link = self.root / name.replace("_", ".")
            if not link.is_symlink():
                link.symlink_to(f"..data/{link.name}")

    def files(self, with_ca: bool = True) -> TLSFiles:
        return TLSFiles(str(self.path("tls.crt")), str(self.path("tls.key")), str(self.path("ca.crt")) if with_ca else None)


def secret(ca: Issued, leaf: Issued) -> dict[str, bytes]:
    return {"tls_crt": leaf.cert_pem, "tls_key": leaf.key_pem, "ca_crt": ca.cert_pem}


def client_context(trust: Issued, me: Issued | None, tmp: pathlib.Path) -> ssl.SSLContext:
    """What kube-scheduler's extender client does: verify the server (host name included),
    present `me` if given."""
    ctx = ssl.create_default_context(cadata=trust.cert_pem.decode())
    if me is not None:
        tmp.mkdir(parents=True, exist_ok=True)
        cert, key = tmp / "client.crt", tmp / "client.key"
        cert.write_bytes(me.cert_pem)
        key.write_bytes(me.key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


# --- clients -----------------------------------------------------------------------------------

async def get(port: int, ctx: ssl.SSLContext, path: str = "/healthz", body: bytes | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, force_close=True)) as http:
        method = http.post if body is not None else http.get
        async with method(f"https://{LOCAL}:{port}{path}", data=body) as r:
            return r.status, await r.text()


async def served(port: int, ctx: ssl.SSLContext) -> tuple[bytes, bytes]:
    """(the server's certificate in a fresh handshake, the first bytes of its answer to GET /healthz)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(LOCAL, port, ssl=ctx), CAP)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(12), CAP)
        return der, answer
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def _ask(port: int, ctx: ssl.SSLContext) -> bytes:
    with socket.create_connection((LOCAL, port), timeout=CAP) as raw, ctx.wrap_socket(raw, server_hostname=LOCAL) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return s.recv(12)


async def refused(port: int, ctx: ssl.SSLContext) -> None:
    """Connects and asks: the server must drop the connection without an answer. In TLS 1.3 the
    client's side of the handshake completes before the server has checked its certificate, so
    the refusal shows at the first read (asyncio's server closes without sending the alert)."""
    try:
        answer = await asyncio.to_thread(_ask, port, ctx)
    except (ssl.SSLError, ConnectionError):
        return
    assert answer == b"", f"the server answered {answer!r}"


async def until(cond: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CAP
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {CAP}s waiting for {what}")
        await asyncio.sleep(0.01)


def tiny_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    return app


@contextlib.asynccontextmanager
async def serving(tls: ServingTLS, watch: bool = True) -> AsyncIterator[int]:
    server, task, port = await start_http(tiny_app(), LOCAL, 0, tls.context)
    watcher = asyncio.get_running_loop().create_task(tls.watch()) if watch else None
    try:
        yield port
    finally:
        if watcher is not None:
            watcher.cancel()
        server.should_exit = True
        await task


# --- serving -----------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_only_clients_with_a_certificate_from_the_client_ca_are_answered(tmp_path: pathlib.Path) -> None:
    ca, other = make_ca(), make_ca("someone-else")
    mount = Mounted(tmp_path / "tls")
    mount.write(**secret(ca, issue(ca, "tessera")))
    tls = ServingTLS(mount.files(), interval=0.02)
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2 and tls.context.verify_mode == ssl.CERT_REQUIRED
    async with serving(tls) as port:
        good = client_context(ca, issue(ca, "kube-scheduler", ip=None), tmp_path / "good")
        assert await get(port, good) == (200, "ok\n")
        no_cert = client_context(ca, None, tmp_path / "none")
        await refused(port, no_cert)
        stranger = client_context(ca, issue(other, "kube-scheduler", ip=None), tmp_path / "stranger")
        await refused(port, stranger)
        tls12 = client_context(ca, None, tmp_path / "none")
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2  # in TLS 1.2 the handshake itself fails
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.to_thread(_ask, port, tls12)
        tls12.load_cert_chain(tmp_path / "good" / "client.crt", tmp_path / "good" / "client.key")
        assert (await asyncio.to_thread(_ask, port, tls12)).startswith(b"HTTP/1.1 200")
        with pytest.raises(aiohttp.ClientError):  # plain HTTP on the TLS port gets nothing
            async with aiohttp.ClientSession() as http, http.get(f"http://{LOCAL}:{port}/healthz") as r:
                await r.read()


@pytest.mark.asyncio
async def test_without_a_client_ca_any_client_is_answered_over_tls(tmp_path: pathlib.Path) -> None:
    ca = make_ca()
    mount = Mounted(tmp_path / "tls")
    mount.write(**secret(ca, issue(ca, "tessera")))
    tls = ServingTLS(mount.files(with_ca=False))
    assert tls.context.verify_mode == ssl.CERT_NONE
    async with serving(tls, watch=False) as port:
        assert await get(port, client_context(ca, None, tmp_path / "c")) == (200, "ok\n")


@pytest.mark.asyncio
async def test_a_rotated_certificate_is_served_without_restart(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tessera.tls")
    ca = make_ca()
    first, second = issue(ca, "tessera-1"), issue(ca, "tessera-2")
    mount = Mounted(tmp_path / "tls")
    mount.write(**secret(ca, first))
    tls = ServingTLS(mount.files(), interval=0.02)
    client = client_context(ca, issue(ca, "kube-scheduler", ip=None), tmp_path / "client")
    async with serving(tls) as port:
        assert (await served(port, client))[0] == first.der
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client)) as kept:  # a kept-alive connection
            async with kept.get(f"https://{LOCAL}:{port}/healthz") as r:
                assert r.status == 200
            mount.write(**secret(ca, second))
            await until(lambda: tls.reloads == 1, "the rotation to be picked up")
            der, answer = await served(port, client)
            assert der == second.der and answer.startswith(b"HTTP/1.1 200")
            async with kept.get(f"https://{LOCAL}:{port}/healthz") as r:
                assert r.status == 200
        assert tls.failures == 0 and tls.last_error is None
    assert any(r.getMessage().startswith("event=tls-reloaded ") for r in caplog.records)


@pytest.mark.asyncio
async def test_a_rotated_client_ca_is_what_clients_are_checked_against(tmp_path: pathlib.Path) -> None:
    old_ca, new_ca = make_ca("old"), make_ca("new")
    mount = Mounted(tmp_path / "tls")
    serving_cert = issue(old_ca, "tessera")
    mount.write(**secret(old_ca, serving_cert))
    tls = ServingTLS(mount.files(), interval=0.02)
    old_client = client_context(old_ca, issue(old_ca, "ks", ip=None), tmp_path / "old")
    new_client = client_context(old_ca, issue(new_ca, "ks", ip=None), tmp_path / "new")
    async with serving(tls) as port:
        assert await get(port, old_client) == (200, "ok\n")
        await refused(port, new_client)
        mount.write(tls_crt=serving_cert.cert_pem, tls_key=serving_cert.key_pem, ca_crt=new_ca.cert_pem)
        await until(lambda: tls.reloads == 1, "the new client CA to be picked up")
        assert await get(port, new_client) == (200, "ok\n")
        await refused(port, old_client)


def _broken(tmp: pathlib.Path, ca: Issued, leaf: Issued, case: str) -> dict[str, bytes]:
    files = secret(ca, leaf)
    if case == "cert-not-pem":
        files["tls_crt"] = b"this is not a certificate\n"
    elif case == "cert-garbled":
        files["tls_crt"] = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    elif case == "key-not-pem":
        files["tls_key"] = b"\x00\x01binary"
    elif case == "key-of-another-cert":
        files["tls_key"] = issue(ca, "other").key_pem
    elif case == "ca-not-pem":
        files["ca_crt"] = b"nope"
    return files


BROKEN = {"cert-not-pem": ("tls.crt", "no PEM certificate"), "cert-garbled": ("tls.crt", "does not parse"),
          "key-not-pem": ("tls.key", "no PEM private key"), "key-of-another-cert": ("tls.key", "does not match"),
          "ca-not-pem": ("ca.crt", "no PEM certificate"), "cert-missing": ("tls.crt", "file not found")}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", sorted(BROKEN))
async def test_a_broken_rotation_keeps_the_old_certificate_and_logs_one_error(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, case: str) -> None:
    caplog.set_level(logging.INFO, logger="tessera.tls")
    ca = make_ca()
    first, second = issue(ca, "tessera-1"), issue(ca, "tessera-2")
    mount = Mounted(tmp_path / "tls")
    mount.write(**secret(ca, first))
    tls = ServingTLS(mount.files(), interval=0.02)
    client = client_context(ca, issue(ca, "kube-scheduler", ip=None), tmp_path / "client")
    async with serving(tls) as port:
        if case == "cert-missing":
            files = secret(ca, second)
            del files["tls_crt"]  # the version directory lacks it: tls.crt dangles
            mount.write(**files)
        else:
            mount.write(**_broken(tmp_path, ca, second, case))
        await until(lambda: tls.failures == 1, "the broken rotation to be noticed")
        der, answer = await served(port, client)
        assert der == first.der and answer.startswith(b"HTTP/1.1 200"), "the old certificate goes on being served"
        assert await get(port, client) == (200, "ok\n")
        assert tls.check() is None, "unchanged files are not tried (nor logged) again"
        name, problem = BROKEN[case]
        records = [r for r in caplog.records if "event=tls-reload-failed" in r.getMessage()]
        errors = [r.getMessage() for r in records]
        assert len(errors) == 1 and errors[0].startswith(f"event=tls-reload-failed file={mount.path(name)} error="), errors
        assert problem in errors[0] and tls.last_error is not None and problem in tls.last_error
        assert records[0].levelno == logging.ERROR
        mount.write(**secret(ca, second))  # the next good rotation is taken
        await until(lambda: tls.reloads == 1, "the repaired rotation to be picked up")
        assert (await served(port, client))[0] == second.der and tls.last_error is None


def test_a_rotation_noticed_by_inode_and_size_with_files_replaced_in_place(tmp_path: pathlib.Path) -> None:
    ca = make_ca()
    first, second = issue(ca, "a"), issue(ca, "b")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(first.cert_pem)
    key.write_bytes(first.key_pem)
    tls = ServingTLS(TLSFiles(str(cert), str(key)))
    assert tls.check() is None
    for path, data in ((cert, second.cert_pem), (key, second.key_pem)):
        new = path.with_suffix(".new")
        new.write_bytes(data)
        os.replace(new, path)  # a new inode, as `mv` over it gives
    assert tls.check() is True and tls.reloads == 1 and tls.current is not tls.context


# --- bad input at start ------------------------------------------------------------------------

def _files(tmp: pathlib.Path) -> dict[str, pathlib.Path]:
    ca = make_ca()
    leaf = issue(ca, "tessera")
    out = {"cert": tmp / "tls.crt", "key": tmp / "tls.key", "ca": tmp / "ca.crt", "junk": tmp / "junk.txt",
           "garbled": tmp / "garbled.crt", "other_key": tmp / "other.key", "encrypted": tmp / "encrypted.key"}
    out["cert"].write_bytes(leaf.cert_pem)
    out["key"].write_bytes(leaf.key_pem)
    out["ca"].write_bytes(ca.cert_pem)
    out["junk"].write_text("hello\n", encoding="utf-8")
    out["garbled"].write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
    out["other_key"].write_bytes(issue(ca, "x").key_pem)
    out["encrypted"].write_bytes(leaf.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.BestAvailableEncryption(b"secret")))
    return out


# flags (with {cert}, {key}, ... for the files), then what the one line must contain ({x} too)
START_CASES: dict[str, tuple[list[str], list[str]]] = {
    "neither-tls-nor-insecure": ([], ["the webhooks need TLS", "--tls-cert-file", "--insecure-http"]),
    "cert-without-key": (["--tls-cert-file", "{cert}"], ["--tls-cert-file needs --tls-private-key-file"]),
    "key-without-cert": (["--tls-private-key-file", "{key}"], ["--tls-private-key-file needs --tls-cert-file"]),
    "ca-alone": (["--client-ca-file", "{ca}"], ["--client-ca-file needs --tls-cert-file and --tls-private-key-file"]),
    "tls-and-insecure": (["--insecure-http", "--tls-cert-file", "{cert}", "--tls-private-key-file", "{key}"],
                         ["--insecure-http", "cannot be used with --tls-cert-file and --tls-private-key-file"]),
    "ca-and-insecure": (["--insecure-http", "--client-ca-file", "{ca}"], ["cannot be used with --client-ca-file"]),
    "cert-missing": (["--tls-cert-file", "{missing}", "--tls-private-key-file", "{key}"],
                     ["--tls-cert-file {missing}: file not found"]),
    "key-missing": (["--tls-cert-file", "{cert}", "--tls-private-key-file", "{missing}"],
                    ["--tls-private-key-file {missing}: file not found"]),
    "ca-missing": (["--tls-cert-file", "{cert}", "--tls-private-key-file", "{key}", "--client-ca-file", "{missing}"],
                   ["--client-ca-file {missing}: file not found"]),
    "cert-is-a-directory": (["--tls-cert-file", "{dir}", "--tls-private-key-file", "{key}"],
                            ["--tls-cert-file {dir}: is a directory"]),
    "cert-not-pem": (["--tls-cert-file", "{junk}", "--tls-private-key-file", "{key}"],
                     ["--tls-cert-file {junk}: no PEM certificate in it"]),
    "cert-garbled": (["--tls-cert-file", "{garbled}", "--tls-private-key-file", "{key}"],
                     ["--tls-cert-file {garbled}: a certificate in it does not parse"]),
    "key-not-pem": (["--tls-cert-file", "{cert}", "--tls-private-key-file", "{junk}"],
                    ["--tls-private-key-file {junk}: no PEM private key in it"]),
    "key-mismatch": (["--tls-cert-file", "{cert}", "--tls-private-key-file", "{other_key}"],
                     ["--tls-private-key-file {other_key}: does not match the certificate in {cert}"]),
    "key-encrypted": (["--tls-cert-file", "{cert}", "--tls-private-key-file", "{encrypted}"],
                      ["--tls-private-key-file {encrypted}: the private key is encrypted"]),
    "ca-not-pem": (["--tls-cert-file", "{cert}", "--tls-private-key-file", "{key}", "--client-ca-file", "{junk}"],
                   ["--client-ca-file {junk}: no PEM certificate in it"]),
    "ca-garbled": (["--tls-cert-file", "{cert}", "--tls-private-key-file", "{key}", "--client-ca-file", "{garbled}"],
                   ["--client-ca-file {garbled}: a certificate in it does not parse"]),
    "ca-unreadable": (["--tls-cert-file", "{cert}", "--tls-private-key-file", "{key}", "--client-ca-file", "{secret}"],
                      ["--client-ca-file {secret}: not readable"]),
}


@pytest.mark.parametrize("case", sorted(START_CASES))
def test_bad_tls_input_at_start_is_one_line_and_exit_2(tmp_path: pathlib.Path, case: str) -> None:
    if case == "ca-unreadable" and os.geteuid() == 0:
        pytest.skip("root reads every file whatever its mode")
    files = {k: str(v) for k, v in _files(tmp_path).items()}
    files["missing"] = str(tmp_path / "missing.pem")
    files["dir"] = str(tmp_path)
    secret_file = tmp_path / "secret.crt"
    secret_file.write_bytes(pathlib.Path(files["ca"]).read_bytes())
    secret_file.chmod(0)
    files["secret"] = str(secret_file)
    flags, wanted = START_CASES[case]
    # A kubeconfig that does not exist: the TLS check must come first, before any connection.
    out = serve("--kubeconfig", str(tmp_path / "no-kubeconfig"), *(f.format(**files) for f in flags))
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("tessera serve: "), out.stderr
    for w in wanted:
        assert w.format(**files) in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_the_tls_files_are_named_in_errors_raised_in_process(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _files(tmp_path)
    with pytest.raises(TLSFileError) as e:
        server_context(TLSFiles(str(files["cert"]), str(files["other_key"])))
    assert e.value.flag == "--tls-private-key-file" and e.value.path == str(files["other_key"])
    assert str(e.value) == f"--tls-private-key-file {files['other_key']}: does not match the certificate in {files['cert']}"

    def forbidden(path: str, mode: str = "r") -> object:  # what a file of mode 0 gives a non-root user
        if path == str(files["ca"]):
            raise PermissionError(13, "Permission denied", path)
        return open(path, mode)

    monkeypatch.setattr("scheduler.tls.open", forbidden, raising=False)
    with pytest.raises(TLSFileError) as e:
        server_context(TLSFiles(str(files["cert"]), str(files["key"]), str(files["ca"])))
    assert str(e.value) == f"--client-ca-file {files['ca']}: not readable (permission denied)"


# --- replicas calling each other -----------------------------------------------------------------

async def _echo_peer(server: ssl.SSLContext) -> tuple[asyncio.Server, int, list[bytes]]:
    """A TLS server that records the client certificate of every connection and answers 'ok'."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("ssl_object").getpeercert(binary_form=True) or b"")
        await reader.read(1)
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, LOCAL, 0, ssl=server)
    return srv, int(srv.sockets[0].getsockname()[1]), seen


async def _call(port: int, ctx: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(LOCAL, port, ssl=ctx), CAP)
    try:
        writer.write(b"?")
        await writer.drain()
        return await asyncio.wait_for(reader.read(2), CAP)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


@pytest.mark.asyncio
async def test_a_replica_presents_its_own_certificate_and_checks_the_peer_against_the_ca(tmp_path: pathlib.Path) -> None:
    ca, other = make_ca(), make_ca("other")
    me_mount, peer_mount = Mounted(tmp_path / "me"), Mounted(tmp_path / "peer")
    me = issue(ca, "replica-a", ip=None)  # reached by pod IP, which is in no certificate
    me_mount.write(**secret(ca, me))
    peer_mount.write(**secret(ca, issue(ca, "replica-b", ip="10.1.2.3")))
    ctx = peer_client_context(me_mount.files())
    assert not ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    srv, port, seen = await _echo_peer(server_context(peer_mount.files()))
    try:
        assert await _call(port, ctx) == b"ok"
        assert seen == [me.der], "the replica's own certificate is its client certificate"
    finally:
        srv.close()
        await srv.wait_closed()
    stranger = Mounted(tmp_path / "stranger")
    stranger.write(**secret(other, issue(other, "impostor")))
    srv, port, _seen = await _echo_peer(server_context(stranger.files(with_ca=False)))
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await _call(port, ctx)
        # Without a client CA the system trust store is used, which knows no test CA.
        with pytest.raises(ssl.SSLCertVerificationError):
            await _call(port, peer_client_context(me_mount.files(with_ca=False)))
    finally:
        srv.close()
        await srv.wait_closed()


@pytest.mark.asyncio
async def test_the_peer_context_of_serving_tls_follows_rotation(tmp_path: pathlib.Path) -> None:
    ca = make_ca()
    first, second = issue(ca, "a-1", ip=None), issue(ca, "a-2", ip=None)
    mount, peer_mount = Mounted(tmp_path / "me"), Mounted(tmp_path / "peer")
    mount.write(**secret(ca, first))
    peer_mount.write(**secret(ca, issue(ca, "b")))
    tls = ServingTLS(mount.files(), interval=0.02)
    ctx = tls.peer_context()
    srv, port, seen = await _echo_peer(server_context(peer_mount.files()))
    try:
        assert await _call(port, ctx) == b"ok"
        mount.write(**secret(ca, second))
        assert tls.check() is True
        assert await _call(port, ctx) == b"ok"
        assert seen == [first.der, second.der]
    finally:
        srv.close()
        await srv.wait_closed()


# --- `tessera serve` as a process, over HTTPS ------------------------------------------------------

async def _poll(cond: Callable[[], Awaitable[bool]], what: str, proc: asyncio.subprocess.Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120  # a cap for a broken start on a loaded machine, not a speed
    while not await cond():
        if proc.returncode is not None:
            raise AssertionError(f"tessera serve exited with {proc.returncode} while waiting for {what}")
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_serve_answers_the_webhooks_over_https_to_clients_with_a_certificate(tmp_path: pathlib.Path) -> None:
    ca, other = make_ca(), make_ca("other")
    mount = Mounted(tmp_path / "tls")
    mount.write(**secret(ca, issue(ca, "tessera")))
    api = FakeApiServer()
    url = await api.start()
    for o in gpu_cluster(1):
        api.create(o)
    port, metrics_port = free_port(), free_port()
    files = mount.files()
    assert files.client_ca_file is not None
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scheduler.cli", "serve", "--kubeconfig", str(kubeconfig(tmp_path / "kubeconfig", url)),
        "--port", str(port), "--metrics-port", str(metrics_port), "--bind-address", LOCAL, "--log-format", "json",
        "--tls-cert-file", files.cert_file, "--tls-private-key-file", files.key_file, "--client-ca-file",
        files.client_ca_file, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        async def ready() -> bool:  # the metrics port stays plain HTTP, for the kubelet and Prometheus
            try:
                async with aiohttp.ClientSession() as http, http.get(f"http://{LOCAL}:{metrics_port}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await _poll(ready, "tessera serve to become ready", proc)
        good = client_context(ca, issue(ca, "kube-scheduler", ip=None), tmp_path / "good")
        status, text = await get(port, good, "/filter", b"{}")
        assert status == 400 and "Error" in orjson.loads(text), text
        assert await get(port, good, "/readyz") == (200, "ok\n")
        await refused(port, client_context(ca, None, tmp_path / "none"))
        stranger = client_context(ca, issue(other, "kube-scheduler", ip=None), tmp_path / "stranger")
        await refused(port, stranger)
        with pytest.raises(aiohttp.ClientError):
            async with aiohttp.ClientSession() as http, http.post(f"http://{LOCAL}:{port}/filter", data=b"{}") as r:
                await r.read()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        assert proc.stderr is not None
        lines = [orjson.loads(line)["msg"] for line in (await proc.stderr.read()).splitlines() if line.strip()]
        assert any("what=extender" in m and "scheme=https client_certificates=required" in m for m in lines), lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await api.stop()
