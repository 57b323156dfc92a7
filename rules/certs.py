"""What the manager, the agents and the operators agree on about certificates and join tokens.

- The manager's certificate always carries the DNS name MANAGER_NAME, and every client (agents,
  the CLI, the client library) checks the manager's certificate against that name and the
  cluster CA: a node's or a user's certificate (which never carries it) cannot pose as the
  manager, whatever address it is reached at.
- Certificates name who they are for: common name the node id (organizational unit NODE_UNIT)
  or the user's name (unit: the user's role, one of ROLES).
- Join tokens: `PODIUM1-<CA digest, 64 hex>-<secret, 32 base32 characters>`. A joining agent
  checks the CA the manager presents against the digest before it sends anything
  (`ca_matches`); the manager checks the secret (`secrets_equal`, constant time). Rotating the
  secret leaves the digest, and joined nodes' certificates, as they are.
- Keys are EC P-256; private files are written readable by their owner only (`write_private`).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NODE_UNIT = "node"
ROLES = ("admin", "operator", "viewer")
# Certificates are valid from this long before they are issued (clocks a little behind the
# manager's accept them at once); their life, for renewal, counts from the issue.
BACKDATE = datetime.timedelta(minutes=5)
TOKEN_PREFIX = "PODIUM1"
_TOKEN = re.compile(rf"{TOKEN_PREFIX}-([0-9a-f]{{64}})-([a-z2-7]{{32}})")


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
class CertificateInfo:
    common_name: str
    unit: str
    serial: str  # hex
    not_before: datetime.datetime
    not_after: datetime.datetime

    def lifetime(self) -> float:
        """Seconds from its issue (BACKDATE after not_before) to its expiry."""
        return max((self.not_after - self.not_before - BACKDATE).total_seconds(), 0.0)

    def left(self) -> float:
        """Seconds until it expires (negative once it has)."""
        return (self.not_after - now()).total_seconds()


def describe(pem: bytes) -> CertificateInfo:
    """Who a certificate is for, its serial and validity (read only: nothing is verified)."""
    cert = x509.load_pem_x509_certificate(pem)
    return CertificateInfo(
        attribute(cert, NameOID.COMMON_NAME), attribute(cert, NameOID.ORGANIZATIONAL_UNIT_NAME),
        serial_of(cert), cert.not_valid_before_utc, cert.not_valid_after_utc)


def attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def serial_of(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an EC private key")
    return key


def certificate_request(key: ec.EllipticCurvePrivateKey, common_name: str) -> bytes:
    """A PEM certificate signing request for `key` (the signer sets the subject it vouches for)."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def public_key_digest(key: ec.EllipticCurvePublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
