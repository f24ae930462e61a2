"""Create the compose stack's TLS material: a private CA and a server certificate for Postgres and MongoDB.

Run by the ``tls-init`` service (``docker-compose.yaml``) before ``paydata-postgres`` and ``mongodb``
start; it can also be run by hand::

    python compose/tls/make_certs.py --out ./tls --key-out ./tls-private

Writes ``<out>/ca.crt`` and ``<out>/server.crt`` (mode 0644: clients need the CA to verify the
server) and ``<key-out>/server.key`` (mode 0600: only the Postgres and MongoDB containers mount that folder).
The CA private key is never written: the CA exists only to sign this one server certificate, so
re-issuing means generating a new CA and certificate together (``--force``).

The script is self-contained (only ``cryptography``) so it runs in any image that has it, before
the project package is configured. ECDSA P-256 keys with SHA-256 signatures work with TLS 1.3,
which the Postgres service requires (``ssl_min_protocol_version = 'TLSv1.3'``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTNAMES = ("paydata-postgres", "localhost")
DEFAULT_IPS = ("127.0.0.1",)
DEFAULT_DAYS = 825
# Certificates closer than this to expiry are replaced on the next run.
RENEW_BEFORE = dt.timedelta(days=30)

CA_CERT_NAME = "ca.crt"
SERVER_CERT_NAME = "server.crt"
SERVER_KEY_NAME = "server.key"


class CertificateError(RuntimeError):
    """The requested certificates cannot be produced; the message says what to change."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` (never world-readable in between)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _validate_request(
    hostnames: Sequence[str], ips: Sequence[str], days: int
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    if not hostnames:
        raise CertificateError("at least one --hostname is needed: clients verify the server by name")
    for name in hostnames:
        if not name or any(ch.isspace() for ch in name) or "/" in name:
            raise CertificateError(f"invalid hostname {name!r}: use a DNS name such as paydata-postgres")
    if days < 2:
        raise CertificateError(f"--days must be at least 2, got {days}")
    try:
        return [ipaddress.ip_address(ip) for ip in ips]
    except ValueError as exc:
        raise CertificateError(f"invalid --ip: {exc}") from None


def certificates_are_current(
    public_dir: Path, private_dir: Path, hostnames: Sequence[str], ips: Sequence[str] = ()
) -> bool:
    """True if existing files form a usable set: CA signed the server cert, the key matches it,
    it is for server and client authentication, every requested name/IP is in its SAN and it
    stays valid for at least ``RENEW_BEFORE``.

    Missing or unparsable files count as not current (they will be regenerated).
    """
    try:
        ca = x509.load_pem_x509_certificate((public_dir / CA_CERT_NAME).read_bytes())
        server = x509.load_pem_x509_certificate((public_dir / SERVER_CERT_NAME).read_bytes())
        key = serialization.load_pem_private_key((private_dir / SERVER_KEY_NAME).read_bytes(), password=None)
        server.verify_directly_issued_by(ca)
        san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        usages = set(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if not {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= usages:
        return False
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != server.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return False
    names = set(san.get_values_for_type(x509.DNSName))
    addresses = set(san.get_values_for_type(x509.IPAddress))
    if not set(hostnames) <= names or not {ipaddress.ip_address(ip) for ip in ips} <= addresses:
        return False
    deadline = _now() + RENEW_BEFORE
    return server.not_valid_after_utc > deadline and ca.not_valid_after_utc > deadline


def make_certificates(
    public_dir: Path,
    private_dir: Path,
    hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
    ips: Sequence[str] = DEFAULT_IPS,
    days: int = DEFAULT_DAYS,
    force: bool = False,
) -> bool:
    """Ensure ``public_dir`` holds ``ca.crt``/``server.crt`` and ``private_dir`` holds ``server.key``.

    Returns True if new files were written, False if the existing ones are current (see
    :func:`certificates_are_current`) and ``force`` is not set. The server certificate names
    ``hostnames[0]`` as subject and carries every hostname and IP as a SAN.
    Raises :class:`CertificateError` for invalid names, IPs or validity.
    """
    ip_objects = _validate_request(hostnames, ips, days)
    public_dir.mkdir(parents=True, exist_ok=True)
    private_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(private_dir, 0o700)
    if not force and certificates_are_current(public_dir, private_dir, hostnames, ips):
        return False

    not_before = _now() - dt.timedelta(minutes=5)
    not_after = not_before + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paydata compose"),
            x509.NameAttribute(NameOID.COMMON_NAME, "paydata compose CA"),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName(name) for name in hostnames] + [x509.IPAddress(ip) for ip in ip_objects]
    )
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # clientAuth too: a mongod replica-set member presents its certificate when it connects to
        # members, itself included (the rs.initiate self-check), and the peer verifies it.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    # Key first: a crash between writes leaves a set that fails certificates_are_current and is redone.
    _write(
        private_dir / SERVER_KEY_NAME,
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        0o600,
    )
    _write(public_dir / SERVER_CERT_NAME, server_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(public_dir / CA_CERT_NAME, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for ca.crt and server.crt")
    parser.add_argument("--key-out", type=Path, required=True, help="folder for server.key (mode 0700)")
    parser.add_argument(
        "--hostname",
        action="append",
        dest="hostnames",
        help=f"DNS name for the SAN (repeatable; default: {', '.join(DEFAULT_HOSTNAMES)})",
    )
    parser.add_argument(
        "--ip",
        action="append",
        dest="ips",
        help=f"IP for the SAN (repeatable; default: {', '.join(DEFAULT_IPS)})",
    )
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS)
    parser.add_argument("--force", action="store_true", help="replace current certificates too")
    args = parser.parse_args(argv)
    try:
        written = make_certificates(
            args.out,
            args.key_out,
            hostnames=args.hostnames or DEFAULT_HOSTNAMES,
            ips=args.ips if args.ips is not None else DEFAULT_IPS,
            days=args.days,
            force=args.force,
        )
    except CertificateError as exc:
        print(f"make_certs: {exc}", file=sys.stderr)
        return 2
    print(
        f"make_certs: {'wrote new' if written else 'kept current'} certificates in {args.out} and {args.key_out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
