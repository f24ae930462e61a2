"""The stack's own certificate authority and the server certificates it signs (Postgres, SecantusDB)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from paydata.stack.config import StackConfig
from paydata.stack.secretstore import ensure_secrets_dir, write_private
from paydata.stack.system import ServiceUser

SERVER_DNS_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1", "::1")
CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=825)
# Regenerate the server certificate this long before it expires.
RENEW_MARGIN = dt.timedelta(days=30)


@dataclass(frozen=True)
class KeyAndCert:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def generate_ca(common_name: str = "paydata local stack CA") -> KeyAndCert:
    """A self-signed CA (P-256) allowed to sign server certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyAndCert(key, cert)


def generate_server_cert(
    ca: KeyAndCert,
    dns_names: tuple[str, ...] = SERVER_DNS_NAMES,
    ips: tuple[str, ...] = SERVER_IPS,
) -> KeyAndCert:
    """A server certificate signed by ``ca`` whose SAN lists ``dns_names`` and ``ips``.

    Raises ValueError for an empty name list or an invalid IP address.
    """
    if not dns_names:
        raise ValueError("a server certificate needs at least one DNS name")
    san = [x509.DNSName(name) for name in dns_names] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + SERVER_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return KeyAndCert(key, cert)


def _load(key_path, cert_path) -> KeyAndCert | None:
    if not (key_path.exists() and cert_path.exists()):
        return None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    return KeyAndCert(key, cert)


def ensure_ca(config: StackConfig) -> KeyAndCert:
    """The stack's CA, created once (``ca.crt`` public, its key 0600 in the secrets folder)."""
    ensure_secrets_dir(config)
    config.tls_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.tls_dir, 0o755)
    ca = _load(config.ca_key, config.ca_cert)
    if ca is None:
        ca = generate_ca()
        write_private(config.ca_key, ca.key_pem())
        config.ca_cert.write_bytes(ca.cert_pem())
        os.chmod(config.ca_cert, 0o644)
    return ca


def _ensure_server_cert(ca: KeyAndCert, key_path, cert_path, owner: ServiceUser | None) -> None:
    server = _load(key_path, cert_path)
    if server is None or not _issued_by(server.cert, ca.cert) or server.cert.not_valid_after_utc - RENEW_MARGIN < _now():
        server = generate_server_cert(ca)
        write_private(key_path, server.key_pem(), uid=owner.uid if owner else None, gid=owner.gid if owner else None)
        cert_path.write_bytes(server.cert_pem())
        os.chmod(cert_path, 0o644)
    elif owner is not None:
        # Postgres refuses a key that is not 0600 and owned by the server user.
        os.chown(key_path, owner.uid, owner.gid)
        os.chmod(key_path, 0o600)


def ensure_tls(config: StackConfig, server_user: ServiceUser) -> None:
    """Create the CA (once) and a Postgres server certificate signed by it (again when missing,
    unreadable, signed by another CA or close to expiry). The server key is 0600 and owned by
    ``server_user``."""
    _ensure_server_cert(ensure_ca(config), config.server_key, config.server_cert, server_user)


def ensure_mongo_tls(config: StackConfig) -> None:
    """The SecantusDB server certificate, from the same CA (renewed like the Postgres one).

    It has its own key, owned by the user running the stack (SecantusDB runs as that user), so
    neither server can impersonate the other."""
    _ensure_server_cert(ensure_ca(config), config.mongo_server_key, config.mongo_server_cert, None)


def _issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
