"""TLS and connection helpers for tests: throwaway certificates, server configurations
with a ``tls`` block, and what a server sees of its clients (its monitoring endpoint).

Servers built from :func:`server_conf` listen on 127.0.0.1 only (the command line
:class:`~motadata_actors.mailbox.NatsServer` adds wins over the file) and serve monitoring
on a port of their own choosing, also on 127.0.0.1, reported in the ports file.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import urllib.request
from pathlib import Path

from motadata_actors.mailbox import NatsServer


def make_certificates(directory: Path) -> dict[str, str]:
    """A throwaway CA, certificates it signed, and an unrelated CA.

    Returns paths by name: ``ca`` (with ``ca-key``), ``server`` (for 127.0.0.1, as an IP
    address SAN, with ``server-key``), ``client`` (client auth, with ``client-key``),
    ``wrong-ca`` (an unrelated CA, with ``wrong-ca-key``) and ``wrong-server`` (like
    ``server``, but signed by ``wrong-ca``: an impostor, with ``wrong-server-key``).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{stem}-key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def authority(stem: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(f"test {stem}"))
            .issuer_name(name(f"test {stem}"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        write(stem, cert, key)
        return cert, key

    ca, ca_key = authority("ca")
    wrong_ca, wrong_ca_key = authority("wrong-ca")
    for stem, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
                        ("wrong-server", ExtendedKeyUsageOID.SERVER_AUTH)):  # fmt: skip
        issuer, issuer_key = (wrong_ca, wrong_ca_key) if stem == "wrong-server" else (ca, ca_key)
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(f"test {stem}"))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        )
        if stem != "client":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        write(stem, builder.sign(issuer_key, hashes.SHA256()), key)
    return {p.name.removesuffix(".pem"): str(p) for p in directory.glob("*.pem")}


def server_conf(
    certificates: dict[str, str] | None = None,
    *,
    cert: str = "server",
    verify: bool = False,
    extra: str = "",
) -> str:
    """A nats-server configuration: monitoring on 127.0.0.1, TLS required when
    ``certificates`` are given (presenting ``cert``; client certificates signed by ``ca``
    required too with ``verify``), then ``extra``."""
    lines = ['http: "127.0.0.1:-1"']
    if certificates is not None:
        lines += [
            "tls {",
            f"  cert_file: {json.dumps(certificates[cert])}",
            f"  key_file: {json.dumps(certificates[cert + '-key'])}",
            f"  ca_file: {json.dumps(certificates['ca'])}",
            f"  verify: {'true' if verify else 'false'}",
            "  timeout: 2",
            "}",
        ]
    return "\n".join([*lines, extra, ""])


def configured_server(directory: Path, conf: str, *, name: str, port: int = -1) -> NatsServer:
    """A (not yet started) nats-server running ``conf``, written into ``directory``."""
    path = directory / f"{name}.conf"
    path.write_text(conf)
    return NatsServer(server_name=name, jetstream=False, port=port, args=["-c", str(path)])


def _monitoring_url(server: NatsServer) -> str:
    assert server.tmp_dir is not None and server.pid is not None, "server not running"
    [ports] = server.tmp_dir.glob(f"*_{server.pid}.ports")
    urls = json.loads(ports.read_text())["monitoring"]
    url = str(urls[0])
    assert url.startswith("http://127.0.0.1:"), url
    return url


def _connz(server: NatsServer) -> dict[str, object]:
    # No proxy: a proxy from the environment must never see (or answer for) a test server.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{_monitoring_url(server)}/connz", timeout=5) as reply:
        data: dict[str, object] = json.loads(reply.read())
    return data


async def client_count(server: NatsServer) -> int:
    """How many client connections the server holds now (from its ``/connz``)."""
    data = await asyncio.to_thread(_connz, server)
    count = data["num_connections"]
    assert isinstance(count, int)
    return count


async def wait_for_no_clients(server: NatsServer, timeout: float = 5.0) -> None:
    """Wait until the server holds no client connection; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (count := await client_count(server)) != 0:
        if loop.time() > deadline:
            raise AssertionError(f"the server still holds {count} client connection(s)")
        await asyncio.sleep(0.05)


def open_sockets() -> int:
    """How many sockets this process holds open now (Linux: from ``/proc/self/fd``)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:  # closed while listing
            pass
    return count
