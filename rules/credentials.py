"""A credentials file: what a user (or a script) needs to reach the manager.

One JSON file, readable by its owner only: the manager's address, the user's name and role, the
cluster CA's certificate, the user's certificate and key (PEM). The manager writes the local
admin's at its first start (`podium manager --admin-credentials`, DEFAULT_PATH by default);
`podium user add` writes others. The CLI and the client library find it by, in order, their
`--credentials` flag / argument, $PODIUM_CREDENTIALS, DEFAULT_PATH, then SYSTEM_PATH (where the
installed manager service writes it: deploy/install.sh).
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from podium.rules.files import write_private

if TYPE_CHECKING:
    import ssl

# The name in the manager's certificate, the one every client checks (whatever address it dials).
MANAGER_NAME = "podium-manager"

ENV = "PODIUM_CREDENTIALS"
DEFAULT_PATH = pathlib.Path("~/.config/podium/credentials")
SYSTEM_PATH = pathlib.Path("/etc/podium/admin.credentials")
# Every client checks the manager's certificate against this name (podium.rules.certs).
CHANNEL_OPTIONS = [("grpc.ssl_target_name_override", MANAGER_NAME)]


class CredentialsError(ValueError):
    """A credentials file that is missing or not one; the message names the file."""


@dataclass(frozen=True, slots=True)
class Credentials:
    manager: str  # HOST:PORT
    user: str
    role: str
    ca: bytes  # PEM
    certificate: bytes  # PEM
    key: bytes  # PEM

    def save(self, path: pathlib.Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in asdict(self).items()}
        write_private(path, (json.dumps(fields, indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: pathlib.Path) -> Credentials:
        try:
            fields: Any = json.loads(path.read_text())
        except FileNotFoundError:
            raise CredentialsError(
                f"no credentials file at {path}: the manager writes the local admin's to "
                f"{DEFAULT_PATH} at its first start, `podium user add` makes others; name one "
                f"with --credentials or ${ENV}") from None
        except (OSError, ValueError) as err:
            raise CredentialsError(f"{path}: not a credentials file ({err})") from None
        names = ("manager", "user", "role", "ca", "certificate", "key")
        if not isinstance(fields, dict) or not all(isinstance(fields.get(n), str)
                                                   for n in names):
            raise CredentialsError(f"{path}: not a credentials file (it needs the text fields "
                                   f"{', '.join(names)})")
        return cls(fields["manager"], fields["user"], fields["role"], fields["ca"].encode(),
                   fields["certificate"].encode(), fields["key"].encode())

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS client context for the client library: this user's certificate, the
        manager's checked against the cluster CA (for MANAGER_NAME: the caller's
        server_hostname), HTTP/2 offered. The key goes to OpenSSL through a memory file, never
        to a disk."""
        import ssl

        context = ssl.create_default_context(cadata=self.ca.decode())
        context.set_alpn_protocols(["h2"])
        fd = os.memfd_create("podium-credentials", os.MFD_CLOEXEC)
        try:
            with open(fd, "wb", closefd=False) as chain:
                chain.write(self.certificate + b"\n" + self.key)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return context

    def channel_credentials(self) -> Any:
        """grpc.ChannelCredentials: this user's certificate, checked against the cluster CA."""
        import grpc

        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.certificate)


def locate(explicit: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """The credentials file to use: `explicit`, else $PODIUM_CREDENTIALS, else DEFAULT_PATH,
    else SYSTEM_PATH when it exists and DEFAULT_PATH does not."""
    chosen = explicit or os.environ.get(ENV)
    if chosen:
        return pathlib.Path(chosen).expanduser()
    default = DEFAULT_PATH.expanduser()
    return SYSTEM_PATH if not default.exists() and SYSTEM_PATH.exists() else default
