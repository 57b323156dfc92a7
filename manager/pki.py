"""The cluster's certificate authority.

`ClusterCA.load_or_create(directory)` reads the CA from `directory` (ca.crt, ca.key), making it
on first use: an EC P-256 key, written with mode 0600 in a 0700 directory, and a self-signed
certificate valid CA_DAYS. `issue(...)` signs a certificate for a node (common name: its node
id, organizational unit "node") or a user (common name: the user's name, unit: its role), with
the subject alternative names asked for (the manager's addresses for its own), valid
`lifetime`; it returns the certificate and a new key, both PEM. `sign_request(...)` signs a
certificate signing request instead (an agent's: its key never leaves its host).
`digest()` is the CA certificate's SHA-256 (hex), which a join token pins (podium.rules.certs
has the token's format and what both sides check).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from podium.rules.certs import (
    BACKDATE,
    NODE_UNIT,
    ROLES,
    JoinToken,
    attribute,
    certificate_digest,
    key_pem,
    load_key,
    new_key,
    now,
)
from podium.rules.files import write_private

CA_DAYS = 3650
NODE_LIFETIME = datetime.timedelta(days=90)  # Swarm's default
USER_LIFETIME = datetime.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Issued:
    certificate: bytes  # PEM
    key: bytes  # PEM (PKCS#8, unencrypted)


def read_request(pem: bytes) -> ec.EllipticCurvePublicKey:
    """The public key of a well-formed, self-signed EC P-256 request; ValueError otherwise."""
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError:
        raise ValueError("csr: not a PEM certificate signing request") from None
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("csr: the key must be EC P-256")
    if not csr.is_signature_valid:
        raise ValueError("csr: its signature does not match its key")
    return key


class ClusterCA:
    def __init__(self, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.certificate = certificate
        self._key = key

    @classmethod
    def load_or_create(cls, directory: pathlib.Path | str) -> ClusterCA:
        path = pathlib.Path(directory)
        cert_path, key_path = path / "ca.crt", path / "ca.key"
        if cert_path.exists() and key_path.exists():
            try:
                key = load_key(key_path.read_bytes())
            except ValueError as err:
                raise ValueError(f"{key_path}: {err}") from None
            return cls(x509.load_pem_x509_certificate(cert_path.read_bytes()), key)
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "podium cluster CA")])
        at = now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(at - BACKDATE)
            .not_valid_after(at + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        write_private(key_path, key_pem(key))
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(certificate, key)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def digest(self) -> str:
        return certificate_digest(self.pem)

    def token(self, secret: str) -> JoinToken:
        return JoinToken(self.digest(), secret)

    def issue(self, common_name: str, unit: str, *,
              lifetime: datetime.timedelta = NODE_LIFETIME,
              names: tuple[str, ...] = (), server: bool = False) -> Issued:
        """A certificate and key for `common_name` in `unit` ("node", or a role for a user);
        `names` are DNS names or IP addresses it is valid for (a server's)."""
        key = new_key()
        certificate = self.sign(key.public_key(), common_name, unit, lifetime=lifetime,
                                names=names, server=server)
        return Issued(certificate, key_pem(key))

    def sign_request(self, csr: bytes, common_name: str, unit: str, *,
                     lifetime: datetime.timedelta = NODE_LIFETIME) -> bytes:
        """A certificate for the key of a PEM signing request (checked: `read_request`)."""
        return self.sign(read_request(csr), common_name, unit, lifetime=lifetime)

    def sign(self, public_key: ec.EllipticCurvePublicKey, common_name: str, unit: str, *,
             lifetime: datetime.timedelta, names: tuple[str, ...] = (),
             server: bool = False) -> bytes:
        if not common_name or unit not in (NODE_UNIT, *ROLES, "manager"):
            raise ValueError(f"cannot issue a certificate for {common_name!r} in {unit!r}")
        at = now()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit)])
        usage = [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usage.append(x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(at - BACKDATE)
            .not_valid_after(at + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        return builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def verify(self, pem: bytes) -> tuple[str, str]:
        """(common name, unit) of a certificate this CA signed and that is valid now; raises
        ValueError otherwise."""
        cert = x509.load_pem_x509_certificate(pem)
        try:
            cert.verify_directly_issued_by(self.certificate)
        except Exception as err:  # InvalidSignature, or another issuer
            raise ValueError(f"not signed by this cluster's CA: {err or type(err).__name__}") \
                from None
        at = now()
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise ValueError(f"certificate not valid now (valid {cert.not_valid_before_utc} to "
                             f"{cert.not_valid_after_utc})")
        return attribute(cert, NameOID.COMMON_NAME), attribute(
            cert, NameOID.ORGANIZATIONAL_UNIT_NAME)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
