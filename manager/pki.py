"""The cluster's certificate authority and its join tokens (the groundwork of mutual TLS).

`ClusterCA.load_or_create(directory)` reads the CA from `directory` (ca.crt, ca.key), making it
on first use: an EC P-256 key, written with mode 0600 in a 0700 directory, and a self-signed
certificate valid CA_DAYS. `issue(...)` signs a certificate for a node (common name: its node
id, organizational unit "node") or a user (common name: the user's name, unit: its role), with
the subject alternative names asked for (the manager's addresses for its own), valid `days`;
it returns the certificate and a new key, both PEM. `digest()` is the CA certificate's SHA-256
(hex), which a join token pins.

Join tokens (pure): `PODIUM1-<CA digest, 64 hex>-<secret, 32 base32 characters>`. A joining
agent checks the CA the manager presents against the digest before it sends anything
(`ca_matches`); the manager checks the secret (`secrets_equal`, constant time). `new_secret()`
makes one; rotating the secret leaves the digest, and joined nodes' certificates, as they are.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import os
import pathlib
import re
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CA_DAYS = 3650
NODE_DAYS = 90
TOKEN_PREFIX = "PODIUM1"
_TOKEN = re.compile(rf"{TOKEN_PREFIX}-([0-9a-f]{{64}})-([a-z2-7]{{32}})")
ROLES = ("admin", "operator", "viewer")
NODE_UNIT = "node"


class TokenError(ValueError):
    """A join token that is not one; the message says what one looks like."""


@dataclass(frozen=True, slots=True)
class JoinToken:
    ca_digest: str  # hex SHA-256 of the CA certificate (DER)
    secret: str

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}-{self.ca_digest}-{self.secret}"

    @classmethod
    def parse(cls, text: str) -> JoinToken:
        found = _TOKEN.fullmatch(text.strip())
        if found is None:
            raise TokenError(f"not a join token: expected {TOKEN_PREFIX}-<64 hex digits>-<32 "
                             "characters a-z, 2-7> (`podium token agent` prints one)")
        return cls(found[1], found[2])


def new_secret() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").lower()


def secrets_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def certificate_digest(pem: bytes) -> str:
    """Hex SHA-256 of a PEM certificate's DER bytes."""
    cert = x509.load_pem_x509_certificate(pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def ca_matches(token: JoinToken, ca_pem: bytes) -> bool:
    """Whether the CA certificate a manager presented is the one the token pins."""
    try:
        return hmac.compare_digest(certificate_digest(ca_pem), token.ca_digest)
    except ValueError:  # not a certificate
        return False


@dataclass(frozen=True, slots=True)
class Issued:
    certificate: bytes  # PEM
    key: bytes  # PEM (PKCS#8, unencrypted)


class ClusterCA:
    def __init__(self, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.certificate = certificate
        self._key = key

    @classmethod
    def load_or_create(cls, directory: pathlib.Path | str) -> ClusterCA:
        path = pathlib.Path(directory)
        cert_path, key_path = path / "ca.crt", path / "ca.key"
        if cert_path.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path}: expected an EC private key")
            return cls(x509.load_pem_x509_certificate(cert_path.read_bytes()), key)
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "podium cluster CA")])
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(certificate, key)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def digest(self) -> str:
        return certificate_digest(self.pem)

    def token(self, secret: str) -> JoinToken:
        return JoinToken(self.digest(), secret)

    def issue(self, common_name: str, unit: str, *, days: int = NODE_DAYS,
              names: tuple[str, ...] = (), server: bool = False) -> Issued:
        """A certificate and key for `common_name` in `unit` ("node", or a role for a user);
        `names` are DNS names or IP addresses it is valid for (a server's)."""
        if not common_name or unit not in (NODE_UNIT, *ROLES, "manager"):
            raise ValueError(f"cannot issue a certificate for {common_name!r} in {unit!r}")
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit)])
        usage = [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usage.append(x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        return Issued(
            certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
        )

    def verify(self, pem: bytes) -> tuple[str, str]:
        """(common name, unit) of a certificate this CA signed and that is valid now; raises
        ValueError otherwise."""
        cert = x509.load_pem_x509_certificate(pem)
        try:
            cert.verify_directly_issued_by(self.certificate)
        except Exception as err:  # InvalidSignature, or another issuer
            raise ValueError(f"not signed by this cluster's CA: {err or type(err).__name__}") \
                from None
        now = _now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ValueError(f"certificate not valid now (valid {cert.not_valid_before_utc} to "
                             f"{cert.not_valid_after_utc})")
        return _attribute(cert, NameOID.COMMON_NAME), _attribute(
            cert, NameOID.ORGANIZATIONAL_UNIT_NAME)


def _attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_private(path: pathlib.Path, data: bytes) -> None:
    """Writes `data` to a new file readable by its owner only (never briefly by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
