"""The agent's node certificate: joining with a token, keeping it, renewing it.

Files under DATA_DIR/tls (0700): node.key (the node's EC P-256 key, 0600; it never leaves the
host), node.crt and ca.crt. `NodeCertificate.ensure()` runs before the first session: with a
certificate in force it does nothing; otherwise (a new node, or one that was away past its
certificate's life) it joins: it opens a TLS connection to the manager's join port, takes the
CA certificate the manager presents, checks it against the token's digest *before it sends
anything*, then sends the token and a signing request for its key over a connection verified
with that CA. `renew_forever()` asks the manager for a new certificate over the session's own
port at a random point RENEW_FROM-RENEW_TO through the certificate's life (Swarm's 50-80 %),
retrying with backoff, and rejoins with the token if the certificate expired meanwhile.
"""

from __future__ import annotations

import _ssl
import asyncio
import contextlib
import logging
import pathlib
import random
import ssl
from collections.abc import Callable
from typing import Any

import grpc

from podium.rules import managers
from podium.rules.certs import (
    CertificateInfo,
    JoinToken,
    ca_matches,
    certificate_request,
    describe,
    key_pem,
    load_key,
    new_key,
)
from podium.rules.credentials import CHANNEL_OPTIONS, MANAGER_NAME
from podium.rules.files import write_private
from podium.v1 import dispatcher, dispatcher_grpc

log = logging.getLogger(__name__)

RENEW_FROM, RENEW_TO = 0.5, 0.8
RETRY_S = (1.0, 60.0)  # backoff of a failed renewal: first delay, longest
CALL_TIMEOUT_S = 10.0


class JoinError(Exception):
    """This node cannot get a certificate; the message says why and what would help.
    `retry`: the manager could not be reached (trying again may help)."""

    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry
        self.leader: str | None = None  # the leader's join port, when a follower named it


class NodeCertificate:
    def __init__(self, *, data_dir: pathlib.Path, node_id: str, manager: str,
                 join_address: str, token: JoinToken | None) -> None:
        self._dir = data_dir / "tls"
        self._node_id = node_id
        # Several managers: the session's current one is where renewals go (see follow()).
        self._managers = managers.parse(manager)
        self._current: Callable[[], str] = lambda: self._managers[0]
        self._join_addresses = managers.parse(join_address, what="join address")
        self._token = token
        self._credentials: Any = None

    def follow(self, current: Callable[[], str]) -> None:
        """Renewals go to the manager `current()` names (the session's, which is the leader's)."""
        self._current = current

    # What the session uses.

    def channel_credentials(self) -> Any:
        """grpc.ChannelCredentials with the newest certificate (a new channel picks up a
        renewal; an open session goes on with the one it opened with)."""
        if self._credentials is None:
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=self._read("ca.crt"), private_key=self._read("node.key"),
                certificate_chain=self._read("node.crt"))
        return self._credentials

    def info(self) -> CertificateInfo | None:
        try:
            return describe(self._read("node.crt"))
        except (OSError, ValueError):
            return None

    # Getting one.

    async def ensure_with_retries(self) -> None:
        """ensure(), trying again (with backoff, forever) while the manager cannot be reached;
        JoinError for a refusal."""
        delay = RETRY_S[0]
        while True:
            try:
                await self.ensure()
                return
            except JoinError as err:
                if not err.retry:
                    raise
                log.warning("%s; trying again in %.0f s", err, delay)
            # Jittered: thousands of agents refused at once (a manager restarting, a join storm)
            # come back spread out, not in waves that the manager refuses again.
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, RETRY_S[1])

    async def ensure(self) -> None:
        """A certificate in force on return; JoinError otherwise."""
        info = self.info()
        if info is not None and info.left() > 0 and (self._dir / "ca.crt").exists():
            return
        if self._token is None:
            why = "has no certificate" if info is None else \
                f"'s certificate expired on {info.not_after:%Y-%m-%d %H:%M} UTC"
            raise JoinError(f"this node {why}: start the agent with --token or --token-file "
                            "(`podium token agent` on the manager prints the token)")
        await self._join(self._token)

    def _key(self) -> Any:
        path = self._dir / "node.key"
        try:
            return load_key(path.read_bytes())
        except FileNotFoundError:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._dir.chmod(0o700)
            key = new_key()
            write_private(path, key_pem(key))
            return key

    async def _join(self, token: JoinToken) -> None:
        """Joins through each manager's join port in turn (a manager that does not lead names
        the leader's, which is tried next); the last refusal when none accepts."""
        address = self._join_addresses[0]
        error: JoinError | None = None
        for _ in range(2 * len(self._join_addresses) + 1):
            try:
                await self._join_at(address, token)
                return
            except JoinError as err:
                error = err
                if not err.retry:
                    raise
                address = managers.next_address(self._join_addresses, address, err.leader)
        assert error is not None
        raise error

    async def _join_at(self, address: str, token: JoinToken) -> None:
        host, _, port = address.rpartition(":")
        try:
            chain = await presented_chain(host.strip("[]"), int(port))
        except (OSError, ValueError, TimeoutError) as err:
            raise JoinError(f"cannot reach the manager's join port {address}: "
                            f"{err or type(err).__name__}", retry=True) from None
        ca = next((pem for pem in chain if ca_matches(token, pem)), None)
        if ca is None:
            raise JoinError(f"the manager at {address} presented a CA that is not "
                            "the one the token names: another cluster, or someone in between; "
                            "nothing was sent")
        # The files' writes wait for the disk (fsync): in a thread, not in the event loop.
        csr = certificate_request(await asyncio.to_thread(self._key), self._node_id)
        request = dispatcher.JoinRequest(token=str(token), node_id=self._node_id, csr=csr)
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        try:
            async with grpc.aio.secure_channel(address, credentials,
                                               options=CHANNEL_OPTIONS) as channel:
                answer = await dispatcher_grpc.JoinStub(channel).JoinCluster(
                    request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            unreachable = err.code() in (grpc.StatusCode.UNAVAILABLE,
                                         grpc.StatusCode.DEADLINE_EXCEEDED)
            refusal = JoinError(f"the manager refused to let this node join: "
                                f"{err.code().name}: {err.details()}", retry=unreachable)
            refusal.leader = managers.leader_hint(err.trailing_metadata(),
                                                  key=managers.LEADER_JOIN_KEY)
            raise refusal from None
        await asyncio.to_thread(self._save, answer)
        log.info("joined the cluster as node %s", self._node_id)

    def _save(self, answer: dispatcher.NodeCertificate) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        (self._dir / "ca.crt").write_bytes(answer.ca)
        write_private(self._dir / "node.crt", answer.certificate)
        self._credentials = None

    # Keeping it.

    async def renew_forever(self) -> None:
        delay = RETRY_S[0]
        while True:
            info = self.info()
            if info is None:
                return
            wait = info.lifetime() * random.uniform(RENEW_FROM, RENEW_TO) - (
                info.lifetime() - info.left())
            await asyncio.sleep(max(wait, 0.0))
            try:
                await self.renew()
                delay = RETRY_S[0]
            except (grpc.aio.AioRpcError, JoinError) as err:
                message = err.details() if isinstance(err, grpc.aio.AioRpcError) else str(err)
                log.warning("renewing this node's certificate failed (%s); again in %.0f s",
                            message, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, RETRY_S[1])

    async def renew(self) -> None:
        info = self.info()
        if info is None or info.left() <= 0:
            await self.ensure()  # expired: rejoin with the token, if there is one
            return
        csr = certificate_request(await asyncio.to_thread(self._key), self._node_id)
        address = self._current()
        for attempt in range(2):
            try:
                async with grpc.aio.secure_channel(address, self.channel_credentials(),
                                                   options=CHANNEL_OPTIONS) as channel:
                    answer = await dispatcher_grpc.DispatcherStub(channel).RenewCertificate(
                        dispatcher.RenewCertificateRequest(csr=csr), timeout=CALL_TIMEOUT_S)
                break
            except grpc.aio.AioRpcError as err:
                hint = managers.leader_hint(err.trailing_metadata())
                if attempt or hint is None or err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                address = hint  # this manager does not lead: once more, at the leader
        await asyncio.to_thread(self._save, answer)
        log.info("renewed this node's certificate (valid until %s)",
                 describe(answer.certificate).not_after)

    def _read(self, name: str) -> bytes:
        return (self._dir / name).read_bytes()


async def presented_chain(host: str, port: int) -> list[bytes]:
    """The PEM certificates a TLS server presents, unverified (to be checked against a token's
    digest before anything is sent)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    async with asyncio.timeout(CALL_TIMEOUT_S):
        _, writer = await asyncio.open_connection(host, port, ssl=context,
                                                  server_hostname=MANAGER_NAME)
    try:
        tls = writer.get_extra_info("ssl_object")
        public = getattr(tls, "get_unverified_chain", None)  # Python 3.13+
        if public is not None:
            return [ssl.DER_cert_to_PEM_cert(der).encode() for der in public()]
        # Python 3.11-3.12 have it on the private object only.
        chain = tls._sslobj.get_unverified_chain() or []
        pems = (cert.public_bytes(_ssl.ENCODING_PEM) for cert in chain)
        return [pem.encode() if isinstance(pem, str) else pem for pem in pems]
    finally:
        # Aborted, not closed: a TLS close waits for the server's close_notify, which may not
        # come; and waited for, so that a caller whose loop ends right after the join
        # (asyncio.run) does not leave the socket open.
        writer.transport.abort()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
