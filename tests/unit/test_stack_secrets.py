"""Certificates, passwords and key files (no services needed)."""

from __future__ import annotations

import base64
import ipaddress
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from paydata.stack import StackConfig, StackError
from paydata.stack.secretstore import ensure_key_file, ensure_password, parse_key_file, render_key_line
from paydata.stack.system import ServiceUser, check_traversable
from paydata.stack.tls import ensure_tls, generate_ca, generate_server_cert


def current_user() -> ServiceUser:
    return ServiceUser("me", os.geteuid(), os.getegid())


def test_server_certificate_is_signed_by_ca_with_loopback_san():
    ca = generate_ca()
    server = generate_server_cert(ca)
    server.cert.verify_directly_issued_by(ca.cert)
    san = server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    with pytest.raises(InvalidSignature):
        server.cert.verify_directly_issued_by(generate_ca().cert)


def test_server_certificate_rejects_bad_names():
    ca = generate_ca()
    with pytest.raises(ValueError, match="at least one DNS name"):
        generate_server_cert(ca, dns_names=())
    with pytest.raises(ValueError):
        generate_server_cert(ca, ips=("not-an-ip",))


def test_ensure_tls_writes_private_keys_once_and_reissues_for_a_new_ca(tmp_path):
    config = StackConfig(state_dir=tmp_path)
    ensure_tls(config, current_user())
    assert config.server_key.stat().st_mode & 0o777 == 0o600
    assert config.ca_key.stat().st_mode & 0o777 == 0o600
    assert config.ca_cert.stat().st_mode & 0o777 == 0o644
    first_server = config.server_cert.read_bytes()
    first_ca = config.ca_cert.read_bytes()
    ensure_tls(config, current_user())
    assert config.server_cert.read_bytes() == first_server and config.ca_cert.read_bytes() == first_ca
    # A new CA (old one deleted) must not leave a server certificate the clients can no longer verify.
    config.ca_key.unlink()
    ensure_tls(config, current_user())
    ca = x509.load_pem_x509_certificate(config.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(config.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert config.server_cert.read_bytes() != first_server


def test_passwords_are_generated_once_and_private(tmp_path):
    config = StackConfig(state_dir=tmp_path)
    password = ensure_password(config, "oltp_owner")
    assert len(password) >= 24
    assert ensure_password(config, "oltp_owner") == password
    assert ensure_password(config, "warehouse_owner") != password
    assert config.password_file("oltp_owner").stat().st_mode & 0o777 == 0o600


def test_key_file_format_and_no_overwrite(tmp_path):
    path = tmp_path / "kek"
    keys = ensure_key_file(path)
    assert len(keys) == 1 and keys[0][0] == "k1" and len(keys[0][1]) == 32
    line = path.read_text()
    assert line.count("\n") == 1 and line.startswith("k1:")
    assert base64.b64decode(line.strip().split(":", 1)[1]) == keys[0][1]
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_key_file(path) == keys  # never regenerated
    path.write_text(line + render_key_line("k2", b"\x01" * 32) + "\n")
    assert [key_id for key_id, _ in parse_key_file(path)] == ["k1", "k2"]


@pytest.mark.parametrize("content, message", [
    ("", "holds no key"),
    ("k1:short\n", "kek:1 is not a"),
    ("k1 " + base64.b64encode(b"x" * 32).decode() + "\n", "kek:1 is not a"),
    ("k1:" + base64.b64encode(b"x" * 31).decode() + "\n", "kek:1 is not a"),
])
def test_damaged_key_files_are_not_replaced(tmp_path, content, message):
    path = tmp_path / "kek"
    path.write_text(content)
    with pytest.raises(StackError, match=message):
        ensure_key_file(path)
    assert path.read_text() == content


def test_render_key_line_rejects_bad_keys():
    with pytest.raises(ValueError, match="32 bytes"):
        render_key_line("k1", b"short")
    with pytest.raises(ValueError, match="key id"):
        render_key_line("k:1", b"x" * 32)


def test_untraversable_parent_is_reported():
    base = Path(tempfile.mkdtemp(prefix="paydata-traverse-", dir="/tmp"))
    base.chmod(0o755)
    locked = base / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0o700)
    nobody = ServiceUser("nobody", 65534, 65534)
    try:
        with pytest.raises(StackError, match=r"'nobody'.*cannot enter .*locked.*PAYDATA_STACK_DIR"):
            check_traversable(locked / "inner" / "data", nobody)
        locked.chmod(0o711)
        check_traversable(locked / "inner" / "data", nobody)
    finally:
        shutil.rmtree(base)
