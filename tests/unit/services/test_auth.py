"""Identity and entitlements (services/common/auth.py) without servers: token verification
and its cache, the entitlements file and its reload, the guard's account checks, the
configuration's refusals, and docs/access.md against the table."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from services.common import access, auth
from services.common.config import ConfigError
from services.common.identities import generate_key_pair, mint, provision_local, write_entitlements
from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

ISSUER, AUDIENCE = "issuer-1", "tessera-test"


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_key_pair(tmp_path / "keys")


def verifier_for(public: Path, **kwargs: Any) -> auth.TokenVerifier:
    algorithm, key = auth.load_public_key("test", str(public))
    return auth.TokenVerifier([("jwt-public", algorithm, key)], issuer=ISSUER, audience=AUDIENCE, **kwargs)


def token(private: Path, subject: str = "alice", **kwargs: Any) -> str:
    kwargs.setdefault("issuer", ISSUER)
    kwargs.setdefault("audience", AUDIENCE)
    return mint(private, subject, **kwargs)


def problem_of(verifier: auth.TokenVerifier, text: str) -> str:
    with pytest.raises(auth.NotAuthenticated) as caught:
        verifier.verify(text)
    assert caught.value.reason == "IDENTITY_INVALID"
    return caught.value.metadata["problem"]


# -- tokens ------------------------------------------------------------------------------------
def test_a_valid_token_names_its_subject(keys: tuple[Path, Path]) -> None:
    private, public = keys
    assert verifier_for(public).verify(token(private)) == "alice"


@pytest.mark.parametrize(("problem", "changes"), [
    ("expired", {"now": time.time() - 3600, "lifetime": 60}),
    ("audience", {"audience": "another-service"}),
    ("issuer", {"issuer": "another-issuer"}),
    ("not_yet_valid", {"extra": {"nbf": int(time.time()) + 3600}}),
])
def test_a_token_with_a_wrong_claim_is_refused_with_the_problem(keys: tuple[Path, Path], problem: str,
                                                                changes: dict[str, Any]) -> None:
    private, public = keys
    assert problem_of(verifier_for(public), token(private, **changes)) == problem


def test_a_token_of_another_key_fails_its_signature(keys: tuple[Path, Path], tmp_path: Path) -> None:
    other, _ = generate_key_pair(tmp_path / "other")
    assert problem_of(verifier_for(keys[1]), token(other)) == "signature"


def test_an_unsigned_or_hs256_token_is_refused_by_a_public_key_verifier(keys: tuple[Path, Path]) -> None:
    import jwt

    claims = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": int(time.time()), "exp": int(time.time()) + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")
    verifier = verifier_for(keys[1])
    assert problem_of(verifier, unsigned) == "algorithm"
    # Algorithm confusion: the public key's PEM used as an HMAC secret.
    confused = jwt.encode(claims, b"x" * 64, algorithm="HS256")
    assert problem_of(verifier, confused) == "algorithm"


def test_a_token_without_a_subject_or_expiry_is_refused(keys: tuple[Path, Path]) -> None:
    import jwt
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(keys[0].read_bytes(), None)
    no_exp = jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": int(time.time())}, key,
                        algorithm="EdDSA")
    assert problem_of(verifier_for(keys[1]), no_exp) == "claims"
    assert problem_of(verifier_for(keys[1]), "garbage") == "malformed"


def test_hs256_with_a_key_file(tmp_path: Path) -> None:
    secret = tmp_path / "hmac.key"
    secret.write_bytes(os.urandom(32).hex().encode())
    verifier = auth.TokenVerifier.from_env({auth.HMAC_KEY_VARIABLE: str(secret), auth.ISSUER_VARIABLE: ISSUER,
                                            auth.AUDIENCE_VARIABLE: AUDIENCE})
    assert verifier is not None and verifier.algorithms == ["HS256"]
    good = mint(secret.read_bytes(), "bot", issuer=ISSUER, audience=AUDIENCE, algorithm="HS256")
    assert verifier.verify(good) == "bot"
    short = tmp_path / "short.key"
    short.write_bytes(b"too short")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        auth.TokenVerifier.from_env({auth.HMAC_KEY_VARIABLE: str(short), auth.ISSUER_VARIABLE: ISSUER,
                                     auth.AUDIENCE_VARIABLE: AUDIENCE})


@pytest.mark.parametrize("leeway", ["nan", "inf", "-inf", "-5"])
def test_a_leeway_that_is_not_a_finite_nonnegative_number_of_seconds_is_refused(tmp_path: Path, leeway: str) -> None:
    # PyJWT compares exp with now - leeway: NaN or infinity would let every expired token through.
    secret = tmp_path / "hmac.key"
    secret.write_bytes(os.urandom(32).hex().encode())
    env = {auth.HMAC_KEY_VARIABLE: str(secret), auth.ISSUER_VARIABLE: ISSUER, auth.AUDIENCE_VARIABLE: AUDIENCE,
           auth.LEEWAY_VARIABLE: leeway}
    with pytest.raises(ConfigError, match=auth.LEEWAY_VARIABLE):
        auth.TokenVerifier.from_env(env)
    assert auth.TokenVerifier.from_env({**env, auth.LEEWAY_VARIABLE: "0"}).leeway == 0  # type: ignore[union-attr]


def test_a_verified_token_is_cached_until_it_expires(keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import jwt

    private, public = keys
    now = [time.time()]
    verifier = verifier_for(public, leeway=0, clock=lambda: now[0])
    text = token(private, lifetime=60, now=now[0])
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        decoded.append(args[0])
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    assert [verifier.verify(text) for _ in range(3)] == ["alice"] * 3
    assert len(decoded) == 1  # verified once; then the cache answers by the token's exact text
    now[0] += 61  # past its exp by this clock: the cache no longer answers, the token is verified again
    verifier.verify(text)  # (PyJWT checks exp by the real clock, by which it is still valid)
    assert len(decoded) == 2


# -- the entitlements file ----------------------------------------------------------------------
def test_entitlements_parse_roles_and_accounts() -> None:
    grants = auth.parse_entitlements(
        "principals:\n  - {name: alice, roles: [trader], accounts: [a1, a2]}\n  - {name: ops, roles: [operator, auditor]}\n")
    assert grants["alice"] == auth.Grant(frozenset({"trader"}), frozenset({"a1", "a2"}))
    assert grants["ops"].roles == {"operator", "auditor"} and not grants["ops"].all_accounts
    json_text = '{"principals": [{"name": "svc", "roles": ["service"]}]}'
    assert auth.parse_entitlements(json_text)["svc"].roles == {"service"}


@pytest.mark.parametrize(("text", "message"), [
    ("principals: [{name: x, roles: [king]}]", "unknown role"),
    ("principals: [{name: x, roles: [trader]}]", "needs its accounts"),
    ("principals: [{name: x, roles: []}]", "non-empty list"),
    ("principals: [{roles: [auditor]}]", "needs a name"),
    ("principals: [{name: x, roles: [auditor]}, {name: x, roles: [auditor]}]", "listed twice"),
    ("nobody: here", "'principals' list"),
    ("principals: [", "not YAML"),
])
def test_a_bad_entitlements_file_is_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        auth.parse_entitlements(text)


def test_the_entitlements_file_is_reloaded_when_it_changes_and_a_bad_one_is_ignored(tmp_path: Path) -> None:
    path = write_entitlements(tmp_path / "e.yaml", [("alice", ["auditor"], [])])
    now = [0.0]
    entitlements = auth.Entitlements(str(path), clock=lambda: now[0])
    assert entitlements.get("bob") is None
    write_entitlements(path, [("alice", ["auditor"], []), ("bob", ["operator"], [])])
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert entitlements.get("bob") is None  # checked at most once a second
    now[0] += auth.RELOAD_CHECK_SECONDS
    assert entitlements.get("bob") == auth.Grant(frozenset({"operator"}), frozenset())
    path.write_text("principals: [")  # broken: the last good file stays in force
    now[0] += auth.RELOAD_CHECK_SECONDS
    assert entitlements.get("bob") is not None


# -- the guard ---------------------------------------------------------------------------------
class FakeContext:
    def __init__(self, peer_uri: str = "") -> None:
        self.peer_uri = peer_uri

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"peer_uri": [self.peer_uri.encode()]} if self.peer_uri else {}


@pytest.fixture(autouse=True)
def _the_call_ends_with_the_test() -> Any:
    """A guard called outside a gRPC call sets the caller in the test's own context: put
    back what was there after each test, as the end of a call does, so no later test
    runs as this one's caller."""
    token = auth._call_var.set(auth._call_var.get())
    yield
    auth._call_var.reset(token)


@pytest.fixture()
def authorizer(keys: tuple[Path, Path], tmp_path: Path) -> auth.Authorizer:
    path = write_entitlements(tmp_path / "entitlements.yaml", [
        ("trader", ["trader"], ["a1"]), ("ops", ["operator"], []), ("spiffe://tessera/oms", ["service"], []),
    ])
    return auth.Authorizer(verifier=verifier_for(keys[1]), entitlements=auth.Entitlements(str(path)), mtls=True)


def bearer(private: Path, subject: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token(private, subject)}")]


def refusal(check: Any, *args: Any) -> str:
    with pytest.raises(auth.DomainError) as caught:
        check(*args)
    return caught.value.reason


def test_the_guard_confines_a_trader_to_its_accounts(authorizer: auth.Authorizer, keys: tuple[Path, Path]) -> None:
    check = authorizer.guard("/tessera.risk.v1.RiskService/ValidateOrder")
    metadata = bearer(keys[0], "trader")
    mine = risk_pb2.ValidateOrderRequest(order=pb.OrderIntent(account="a1"))
    assert check(mine, metadata, FakeContext()).name == "trader"
    other = risk_pb2.ValidateOrderRequest(order=pb.OrderIntent(account="a2"))
    assert refusal(check, other, metadata, FakeContext()) == "NOT_ENTITLED"
    batch = authorizer.guard("/tessera.oms.v1.OrderManagementService/SubmitOrders", oms_pb2.SubmitOrdersRequest)
    raw = oms_pb2.SubmitOrdersRequest(orders=[oms_pb2.SubmitOrderRequest(order=pb.Order(account="a1")),
                                              oms_pb2.SubmitOrderRequest(order=pb.Order(account="a2"))])
    assert refusal(batch, raw.SerializeToString(), metadata, FakeContext()) == "NOT_ENTITLED"  # bytes, parsed
    listing = authorizer.guard("/tessera.oms.v1.OrderManagementService/ListOrders")
    assert refusal(listing, oms_pb2.ListOrdersRequest(), metadata, FakeContext()) == "NOT_ENTITLED"  # no account


def test_the_guard_names_a_certificate_and_refuses_a_call_without_identity(authorizer: auth.Authorizer) -> None:
    check = authorizer.guard("/tessera.exchange.v1.ExchangeService/CancelOrder")
    assert check(None, [], FakeContext("spiffe://tessera/oms")) == auth.Caller("spiffe://tessera/oms", "mtls")
    assert refusal(check, None, [], FakeContext()) == "IDENTITY_MISSING"
    assert refusal(check, None, [("authorization", "Basic abc")], FakeContext()) == "IDENTITY_INVALID"


def test_a_method_outside_the_table_is_open_to_no_role(authorizer: auth.Authorizer, keys: tuple[Path, Path]) -> None:
    check = authorizer.guard("/tessera.risk.v1.RiskService/SomethingNew")
    assert refusal(check, None, bearer(keys[0], "ops"), FakeContext()) == "NOT_ENTITLED"


def test_a_stored_order_is_checked_by_the_servicer(authorizer: auth.Authorizer, keys: tuple[Path, Path]) -> None:
    import contextvars

    def in_a_call() -> None:
        check = authorizer.guard("/tessera.oms.v1.OrderManagementService/GetOrder")
        check(oms_pb2.GetOrderRequest(order_id="x"), bearer(keys[0], "trader"), FakeContext())
        assert auth.confined()
        auth.check_account("a1")
        with pytest.raises(auth.NotEntitled):
            auth.check_account("a2")

    contextvars.Context().run(in_a_call)
    contextvars.Context().run(auth.check_account, "a2")  # outside a confined call: nothing to check


def test_identities_are_required_unless_turned_off_explicitly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="callers cannot be identified"):
        auth.Authorizer.from_env({})
    assert not auth.Authorizer.from_env({auth.MODE_VARIABLE: "none"}).enabled
    with pytest.raises(ConfigError, match="'required'"):
        auth.Authorizer.from_env({auth.MODE_VARIABLE: "off"})
    env = provision_local(tmp_path / "auth")
    without_file = {k: v for k, v in env.items() if k != auth.ENTITLEMENTS_VARIABLE}
    with pytest.raises(ConfigError, match=auth.ENTITLEMENTS_VARIABLE):
        auth.Authorizer.from_env(without_file)
    configured = auth.Authorizer.from_env(env)
    assert configured.enabled and "EdDSA" in configured.describe()


def test_without_identities_every_access_log_line_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import grpc

    from services.common.observability import interceptors

    interceptors._finished.drain()  # the calls of servers an earlier test ran, logged as they were
    written: list[str] = []
    monkeypatch.setattr(interceptors, "_access_line", SimpleNamespace(
        write_timed=lambda entries: written.extend(f"{before}{seconds * 1000:.2f}{after}" for _, _, before, seconds, after, *ids in entries)))
    monkeypatch.setattr(interceptors.access_log, "isEnabledFor", lambda level: True)
    observer = interceptors.CallObserver(access_log_enabled=True)

    async def behavior(request: Any, context: Any) -> str:
        return "ok"

    handler = observer.wrap("/tessera.risk.v1.RiskService/GetLimits",
                            grpc.unary_unary_rpc_method_handler(behavior), guard=None)
    context = SimpleNamespace(invocation_metadata=lambda: (), set_trailing_metadata=lambda metadata: None)
    assert asyncio.run(handler.unary_unary(None, context)) == "ok"
    interceptors._finished.drain()  # written a moment after the call (see _FinishedCalls)
    assert len(written) == 1 and written[0].endswith(" auth=none"), written


# -- the docs page ---------------------------------------------------------------------------------
def test_docs_access_page_is_generated_from_the_table() -> None:
    assert access.PAGE.read_text(encoding="utf-8") == access.render(), (
        "docs/access.md is stale: run `python -m services.common.access --write`")


def test_every_rule_names_known_roles_and_grants() -> None:
    for rule in access.RULES:
        assert set(rule.grants) <= set(access.ROLES), rule
        assert set(rule.grants.values()) <= {access.ALL, access.LISTED}, rule
        if access.LISTED in rule.grants.values():
            assert rule.account, f"{rule.method}: a listed-accounts grant needs to know where the account is"


# -- tessera token ---------------------------------------------------------------------------------
def test_tessera_token_keygen_and_mint_make_tokens_the_services_verify(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from services.cli.__main__ import main

    assert main(["token", "keygen", str(tmp_path / "issuer")]) == 0
    capsys.readouterr()
    assert main(["token", "mint", "--key", str(tmp_path / "issuer" / "jwt-signing.pem"), "--subject", "alice",
                 "--issuer", ISSUER, "--audience", AUDIENCE, "--lifetime", "120"]) == 0
    minted = capsys.readouterr().out.strip()
    assert verifier_for(tmp_path / "issuer" / "jwt-public.pem").verify(minted) == "alice"
    shared = tmp_path / "hmac.key"
    shared.write_text("k" * 40)
    assert main(["token", "mint", "--hmac-key", str(shared), "--subject", "bot", "--issuer", ISSUER,
                 "--audience", AUDIENCE]) == 0
    verifier = auth.TokenVerifier.from_env({auth.HMAC_KEY_VARIABLE: str(shared), auth.ISSUER_VARIABLE: ISSUER,
                                            auth.AUDIENCE_VARIABLE: AUDIENCE})
    assert verifier is not None and verifier.verify(capsys.readouterr().out.strip()) == "bot"


def test_tessera_token_keygen_keeps_a_key_pair_that_is_there_unless_told_to_replace_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from services.cli.__main__ import main

    issuer = tmp_path / "issuer"
    assert main(["token", "keygen", str(issuer)]) == 0
    first = (issuer / "jwt-signing.pem").read_bytes(), (issuer / "jwt-public.pem").read_bytes()
    capsys.readouterr()

    assert main(["token", "keygen", str(issuer)]) == 1
    assert "exists" in capsys.readouterr().err
    assert ((issuer / "jwt-signing.pem").read_bytes(), (issuer / "jwt-public.pem").read_bytes()) == first

    (issuer / "jwt-signing.pem").chmod(0o644)  # a private key left readable: replaced, it is the owner's alone
    assert main(["token", "keygen", "--replace", str(issuer)]) == 0
    assert (issuer / "jwt-signing.pem").read_bytes() != first[0]
    assert (issuer / "jwt-signing.pem").stat().st_mode & 0o777 == 0o600


def test_the_tessera_command_with_a_client_certificate_does_not_send_the_local_stacks_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli import connection

    monkeypatch.chdir(tmp_path)
    (tmp_path / "var" / "auth").mkdir(parents=True)
    (tmp_path / "var" / "auth" / "local.token").write_text("local-stack-token\n")
    for name in ("ca.pem", "me.pem", "me.key"):
        (tmp_path / name).write_bytes(b"pem")
    sent: list[str] = []
    monkeypatch.setattr(connection, "channel_for", lambda address, *, token="", **tls: sent.append(token))

    def options(**given: str) -> SimpleNamespace:
        return SimpleNamespace(**{"token": "", "token_file": "", "tls_ca": "", "tls_cert": "", "tls_key": "",
                                  "tls_server_name": "", **given})

    certificate = {"tls_ca": "ca.pem", "tls_cert": "me.pem", "tls_key": "me.key"}
    connection.connect(options(**certificate), "oms.example:443")
    assert sent == [""]  # the certificate names the caller: the local stack's token is not sent along
    connection.connect(options(), "localhost:50052")
    assert sent[-1] == "local-stack-token"  # without a certificate it is still the default
    connection.connect(options(token="given", **certificate), "oms.example:443")
    assert sent[-1] == "given"  # a token asked for goes with the certificate (and names the caller)


def test_a_service_mints_its_own_token_with_the_shared_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "hmac.key"
    shared.write_text("s" * 40)
    env = {auth.HMAC_KEY_VARIABLE: str(shared), auth.ISSUER_VARIABLE: ISSUER, auth.AUDIENCE_VARIABLE: AUDIENCE,
           auth.SERVICE_PRINCIPAL_VARIABLE: "tessera-service"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(auth.SERVICE_TOKEN_VARIABLE, raising=False)
    monkeypatch.setattr(auth, "_service_token", auth._ServiceToken())
    ((key, value),) = auth.service_metadata()
    assert key == "authorization" and value.startswith("Bearer ")
    verifier = auth.TokenVerifier.from_env(env)
    assert verifier is not None and verifier.verify(value.removeprefix("Bearer ")) == "tessera-service"
    assert auth.service_metadata() == ((key, value),)  # kept until its half-life


def test_a_caller_set_by_a_guard_does_not_outlive_its_test() -> None:
    assert auth.current_caller() == auth.ANONYMOUS  # the tests before this one admitted callers


# -- rotating the token keys ----------------------------------------------------------------------
def test_the_token_keys_are_reloaded_when_their_files_change_and_a_bad_file_is_ignored(tmp_path: Path) -> None:
    import jwt

    first, second = generate_key_pair(tmp_path / "first"), generate_key_pair(tmp_path / "second")
    listed = tmp_path / "jwt-public.pem"
    listed.write_bytes(first[1].read_bytes())
    shared = tmp_path / "shared.key"
    shared.write_bytes(b"a" * 40)
    now = [0.0]
    verifier = auth.TokenVerifier.from_env({
        auth.PUBLIC_KEYS_VARIABLE: str(listed), auth.HMAC_KEY_VARIABLE: str(shared),
        auth.ISSUER_VARIABLE: ISSUER, auth.AUDIENCE_VARIABLE: AUDIENCE}, monotonic=lambda: now[0])
    assert verifier is not None
    old, new = token(first[0], "alice"), token(second[0], "bob")

    def hs256(key: bytes, subject: str) -> str:
        at = int(time.time())
        return jwt.encode({"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": at, "exp": at + 60}, key,
                          algorithm="HS256")

    assert verifier.verify(old) == "alice"
    assert verifier.verify(hs256(b"a" * 40, "carol")) == "carol"
    assert problem_of(verifier, new) == "signature"
    # The operator rotates both keys (a Secret's files replaced in place).
    listed.write_bytes(second[1].read_bytes())
    shared.write_bytes(b"b" * 40)
    for path in (listed, shared):
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert verifier.verify(old) == "alice"  # checked at most once a second
    now[0] += auth.RELOAD_CHECK_SECONDS
    assert verifier.verify(new) == "bob"
    assert problem_of(verifier, old) == "signature"  # the cached verification of the old key is gone too
    assert problem_of(verifier, hs256(b"a" * 40, "carol")) == "signature"
    assert verifier.verify(hs256(b"b" * 40, "carol")) == "carol"
    # A file that no longer holds a key: the last good keys stay in force.
    listed.write_text("not a key")
    now[0] += auth.RELOAD_CHECK_SECONDS
    assert verifier.verify(token(second[0], "dave")) == "dave"


def test_a_token_key_file_that_is_gone_drops_its_key_unless_none_would_be_left(tmp_path: Path) -> None:
    first, second = generate_key_pair(tmp_path / "first"), generate_key_pair(tmp_path / "second")
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    old.write_bytes(first[1].read_bytes())
    new.write_bytes(second[1].read_bytes())
    now = [0.0]
    verifier = auth.TokenVerifier.from_env({auth.PUBLIC_KEYS_VARIABLE: f"{old},{new}", auth.ISSUER_VARIABLE: ISSUER,
                                            auth.AUDIENCE_VARIABLE: AUDIENCE}, monotonic=lambda: now[0])
    assert verifier is not None
    assert verifier.verify(token(first[0], "alice")) == "alice"
    old.unlink()  # the old key is retired
    now[0] += auth.RELOAD_CHECK_SECONDS
    assert problem_of(verifier, token(first[0], "alice")) == "signature"
    assert verifier.verify(token(second[0], "bob")) == "bob"
    new.unlink()  # no key left: refusing every caller is not what a deleted file means
    now[0] += auth.RELOAD_CHECK_SECONDS
    assert verifier.verify(token(second[0], "carol")) == "carol"
