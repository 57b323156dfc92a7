"""The cluster CA and join tokens: made once with tight permissions, certificates it signs verify
and carry who they are for, others do not, and a token pins the CA."""

from __future__ import annotations

import datetime
import pathlib
import stat

import pytest

from podium.manager.pki import ClusterCA
from podium.rules.certs import (
    BACKDATE,
    JoinToken,
    TokenError,
    ca_matches,
    describe,
    new_secret,
    secrets_equal,
)


def test_the_ca_is_made_once_readable_by_its_owner_only(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "ca"
    ca = ClusterCA.load_or_create(folder)
    assert stat.S_IMODE((folder / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    again = ClusterCA.load_or_create(folder)
    assert again.digest() == ca.digest()  # loaded, not made anew


def test_issued_certificates_verify_with_who_they_are_for(tmp_path: pathlib.Path) -> None:
    ca = ClusterCA.load_or_create(tmp_path)
    node = ca.issue("nodeid123", "node")
    assert ca.verify(node.certificate) == ("nodeid123", "node")
    manager = ca.issue("manager", "manager", names=("10.0.0.1", "manager.example"), server=True)
    assert ca.verify(manager.certificate) == ("manager", "manager")
    assert b"PRIVATE KEY" in node.key


def test_a_certificate_of_another_ca_or_expired_does_not_verify(tmp_path: pathlib.Path) -> None:
    ours = ClusterCA.load_or_create(tmp_path / "ours")
    theirs = ClusterCA.load_or_create(tmp_path / "theirs")
    with pytest.raises(ValueError, match="not signed by this cluster's CA"):
        ours.verify(theirs.issue("alice", "admin").certificate)
    with pytest.raises(ValueError, match="not valid now"):
        ours.verify(ours.issue("old", "node", lifetime=datetime.timedelta(0)).certificate)


def test_a_certificate_lives_from_its_issue_not_its_backdated_start(
        tmp_path: pathlib.Path) -> None:
    """Valid from BACKDATE before the issue (clocks a little behind), but a 10 s certificate's
    life, for renewal at 50-80 % of it, is 10 s: counted from not_before, every renewal of it
    would be due at once."""
    ca = ClusterCA.load_or_create(tmp_path)
    info = describe(ca.issue("short", "node", lifetime=datetime.timedelta(seconds=10)).certificate)
    assert info.not_after - info.not_before == datetime.timedelta(seconds=10) + BACKDATE
    assert info.lifetime() == pytest.approx(10, abs=1)
    assert 9 < info.left() <= 10


def test_only_known_units_get_certificates(tmp_path: pathlib.Path) -> None:
    ca = ClusterCA.load_or_create(tmp_path)
    with pytest.raises(ValueError, match="cannot issue"):
        ca.issue("bob", "root")


def test_a_token_pins_the_ca_and_round_trips(tmp_path: pathlib.Path) -> None:
    ca = ClusterCA.load_or_create(tmp_path / "a")
    other = ClusterCA.load_or_create(tmp_path / "b")
    token = ca.token(new_secret())
    parsed = JoinToken.parse(str(token))
    assert parsed == token
    assert ca_matches(parsed, ca.pem)
    assert not ca_matches(parsed, other.pem)
    assert not ca_matches(parsed, b"not a certificate")
    rotated = ca.token(new_secret())
    assert rotated.ca_digest == token.ca_digest
    assert not secrets_equal(rotated.secret, token.secret)
    assert secrets_equal(token.secret, parsed.secret)


@pytest.mark.parametrize("text", ["", "PODIUM1-abc-def", "SWMTKN-1-" + "a" * 64 + "-" + "b" * 25,
                                  "PODIUM1-" + "g" * 64 + "-" + "a" * 32])
def test_what_is_not_a_token_is_refused_saying_what_one_looks_like(text: str) -> None:
    with pytest.raises(TokenError, match="PODIUM1-<64 hex digits>"):
        JoinToken.parse(text)
