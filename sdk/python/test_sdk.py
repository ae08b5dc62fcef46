"""The scenario, through the client openapi-python-client generated from ../../openapi.json.

Run by ../run, which generates the package into ./generated/portcullis_client and sets
PORTCULLIS_URL to a running `portcullis serve --demo`.
"""

import json
import os
import secrets
import sys
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "generated"))

from portcullis_client import AuthenticatedClient, Client  # noqa: E402
from portcullis_client.api.admin import list_audit_events, list_users  # noqa: E402
from portcullis_client.api.api_keys import (  # noqa: E402
    create_api_key,
    delete_api_key,
    list_api_keys,
)
from portcullis_client.api.auth import login_for_access_token, revoke_token  # noqa: E402
from portcullis_client.api.discovery import authorization_server_metadata, jwks  # noqa: E402
from portcullis_client.api.items import create_item, list_items  # noqa: E402
from portcullis_client.api.sessions import end_session, list_sessions, logout  # noqa: E402
from portcullis_client.api.users import change_password, read_current_user, sign_up  # noqa: E402
from portcullis_client.models import (  # noqa: E402
    AccessToken,
    AdminUser,
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    AuditEvent,
    AuditEventList,
    AuditEventType,
    AuthorizationServerMetadata,
    Error,
    Item,
    ItemCreate,
    JwkSet,
    LogoutResult,
    LogoutScope,
    OAuthErrorCode,
    PasswordChange,
    RevocationRequest,
    Scope,
    Session,
    SignupRequest,
    TokenErrorBody,
    TokenRequest,
    User,
    UserList,
)

BASE_URL = os.environ["PORTCULLIS_URL"]


def log_in(username: str, password: str, scope: str | None = None):
    body = TokenRequest(username=username, password=password)
    if scope is not None:
        body.scope = scope
    with Client(base_url=BASE_URL, raise_on_unexpected_status=True) as client:
        return login_for_access_token.sync_detailed(client=client, body=body)


def refresh(refresh_token: str):
    with Client(base_url=BASE_URL, raise_on_unexpected_status=True) as client:
        return login_for_access_token.sync_detailed(
            client=client,
            body=TokenRequest(grant_type="refresh_token", refresh_token=refresh_token),
        )


def checked_token(response) -> AccessToken:
    assert response.status_code == HTTPStatus.OK, response.content
    token = response.parsed
    assert isinstance(token, AccessToken), token
    assert token.token_type == "bearer"
    assert token.expires_in > 0
    assert set(token.scope.split()) == {"me", "items"}
    assert len(token.refresh_token) == 75, token.refresh_token
    return token


def bearer(token: AccessToken) -> AuthenticatedClient:
    return AuthenticatedClient(
        base_url=BASE_URL, token=token.access_token, raise_on_unexpected_status=True
    )


def authenticated() -> AuthenticatedClient:
    return bearer(checked_token(log_in("johndoe", "secret")))


def current_session(client: AuthenticatedClient) -> tuple[Session, list[Session]]:
    """The session of the client's token, and every live session listed."""
    response = list_sessions.sync_detailed(client=client)
    assert response.status_code == HTTPStatus.OK, response.content
    sessions = response.parsed
    assert isinstance(sessions, list), sessions
    assert all(isinstance(session, Session) for session in sessions), sessions
    current = [session for session in sessions if session.current]
    assert len(current) == 1, sessions
    return current[0], sessions


def assert_invalid_refresh_token(response) -> None:
    """The typed 400 of a refresh token that is spent, revoked or of an ended session."""
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    error = response.parsed
    assert isinstance(error, TokenErrorBody), error
    assert error.detail == "Invalid refresh token"
    assert error.error == OAuthErrorCode.INVALID_GRANT
    assert error.error_description == "Invalid refresh token"
    assert error.to_dict() == {
        "detail": "Invalid refresh token",
        "error": "invalid_grant",
        "error_description": "Invalid refresh token",
    }
    assert json.loads(response.content) == error.to_dict()


def assert_session_ended(client: AuthenticatedClient) -> None:
    """A token of an ended session or a deleted API key: the typed 401 of a protected operation."""
    response = read_current_user.sync_detailed(client=client)
    assert response.status_code == HTTPStatus.UNAUTHORIZED, response.content
    error = response.parsed
    assert isinstance(error, Error), error
    assert error.detail == "Could not validate credentials"
    assert response.headers["www-authenticate"] == "Bearer"


def test_read_me():
    with authenticated() as client:
        me = read_current_user.sync(client=client)
    assert isinstance(me, User), me
    assert me.username == "johndoe"
    assert me.email == "johndoe@example.com"
    assert me.disabled is False
    assert set(me.scopes) == {Scope.ME, Scope.ITEMS}


def test_create_and_list_items():
    with authenticated() as client:
        created = create_item.sync(
            client=client, body=ItemCreate(title="python sdk", description="from openapi-python-client")
        )
        assert isinstance(created, Item), created
        assert created.owner == "johndoe"
        assert created.title == "python sdk"
        untitled = create_item.sync(client=client, body=ItemCreate(title="no description"))
        assert isinstance(untitled, Item), untitled
        assert untitled.description is None
        items = list_items.sync(client=client)
    assert isinstance(items, list), items
    listed = {item.id: item for item in items}
    assert created.id in listed
    assert listed[created.id].owner == "johndoe"
    assert listed[created.id].description == "from openapi-python-client"
    assert listed[untitled.id].description is None


def test_invalid_item_is_a_typed_validation_error():
    with authenticated() as client:
        response = create_item.sync_detailed(client=client, body=ItemCreate(title=""))
    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY, response.content
    issues = response.parsed.detail
    assert isinstance(issues, list), response.parsed
    assert [issue.loc for issue in issues] == [["body", "title"]]


def test_wrong_password_is_a_typed_error():
    response = log_in("johndoe", "not-the-password")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    error = response.parsed
    assert isinstance(error, TokenErrorBody), error
    assert error.detail == "Incorrect username or password"
    assert error.error == OAuthErrorCode.INVALID_GRANT
    assert error.error_description == "Incorrect username or password"


def test_sessions_refresh_revocation_and_logout():
    # Log in, then refresh: a new access token and a new refresh token, in the same session.
    first = checked_token(log_in("johndoe", "secret"))
    refreshed = checked_token(refresh(first.refresh_token))
    assert refreshed.refresh_token != first.refresh_token
    assert refreshed.access_token != first.access_token
    # The spent refresh token is not presented again here: within the reuse grace it would still
    # be accepted. Revoking it (below) ends the session, which every later check relies on.
    client = bearer(refreshed)
    me = read_current_user.sync(client=client)
    assert isinstance(me, User), me
    assert me.username == "johndoe"

    # List the sessions: this one is marked current.
    mine, sessions = current_session(client)
    now = datetime.now(UTC)
    assert mine.created_at <= now < mine.expires_at, mine
    assert mine.last_used_at <= now, mine
    assert mine.client_address == "127.0.0.1", mine
    assert mine.user_agent is not None and mine.user_agent.startswith("python-httpx/"), mine
    # The access token of the login and the refreshed one belong to the same session.
    first_mine, _ = current_session(bearer(first))
    assert first_mine.id == mine.id

    # A second login is a second session; end it from the first.
    second = bearer(checked_token(log_in("johndoe", "secret")))
    theirs, _ = current_session(second)
    assert theirs.id != mine.id
    mine_again, sessions = current_session(client)
    assert mine_again.id == mine.id
    listed = {session.id: session for session in sessions}
    assert theirs.id in listed and listed[theirs.id].current is False
    ended = end_session.sync_detailed(client=client, id=theirs.id)
    assert ended.status_code == HTTPStatus.NO_CONTENT, ended.content
    assert ended.content == b""
    assert_session_ended(second)
    _, sessions = current_session(client)
    assert theirs.id not in {session.id for session in sessions}
    # Ended already: the typed 404.
    again = end_session.sync_detailed(client=client, id=theirs.id)
    assert again.status_code == HTTPStatus.NOT_FOUND, again.content
    assert isinstance(again.parsed, Error), again.parsed
    assert again.parsed.detail == "Session not found"

    # Revoke the spent refresh token of the first session: 200, no body, and the whole session
    # ends — its current refresh token gets the typed 400, its access tokens 401.
    with Client(base_url=BASE_URL, raise_on_unexpected_status=True) as anonymous:
        revoked = revoke_token.sync_detailed(
            client=anonymous,
            body=RevocationRequest(token=first.refresh_token, token_type_hint="refresh_token"),
        )
    assert revoked.status_code == HTTPStatus.OK, revoked.content
    assert revoked.content == b""
    assert_invalid_refresh_token(refresh(refreshed.refresh_token))
    assert_session_ended(client)
    assert_session_ended(bearer(first))

    # Log out everywhere: at least this session ends, and its token is refused.
    last = bearer(checked_token(log_in("johndoe", "secret")))
    out = logout.sync_detailed(client=last, scope=LogoutScope.GLOBAL)
    assert out.status_code == HTTPStatus.OK, out.content
    assert isinstance(out.parsed, LogoutResult), out.parsed
    assert out.parsed.sessions_ended >= 1
    assert_session_ended(last)
    # A second logout with the same token: the typed 401 too.
    twice = logout.sync_detailed(client=last, scope=LogoutScope.GLOBAL)
    assert twice.status_code == HTTPStatus.UNAUTHORIZED, twice.content
    assert isinstance(twice.parsed, Error), twice.parsed
    assert twice.parsed.detail == "Could not validate credentials"


def test_discovery():
    with Client(base_url=BASE_URL, raise_on_unexpected_status=True) as client:
        keys = jwks.sync(client=client)
        metadata = authorization_server_metadata.sync(client=client)
    # The demo server signs with HS256, whose secret is never published.
    assert isinstance(keys, JwkSet), keys
    assert keys.keys == []
    assert isinstance(metadata, AuthorizationServerMetadata), metadata
    assert "refresh_token" in metadata.grant_types_supported
    assert "password" in metadata.grant_types_supported
    assert metadata.token_endpoint == f"{BASE_URL}/token"
    assert metadata.revocation_endpoint == f"{BASE_URL}/token/revoke"
    assert metadata.jwks_uri == f"{BASE_URL}/.well-known/jwks.json"
    assert metadata.response_types_supported == []
    assert set(metadata.scopes_supported) == {"me", "items", "admin"}


def test_signup_password_change_and_admin_listing():
    # Sign up a new user (no token: log in next).
    username = f"py-{secrets.token_hex(6)}"
    password = "Vx7#qL2!kT9@"
    with Client(base_url=BASE_URL, raise_on_unexpected_status=True) as anonymous:
        created = sign_up.sync_detailed(
            client=anonymous,
            body=SignupRequest(username=username, password=password, full_name="Python SDK"),
        )
    assert created.status_code == HTTPStatus.CREATED, created.content
    user = created.parsed
    assert isinstance(user, User), user
    assert user.username == username
    assert user.full_name == "Python SDK"
    assert user.email is None
    assert user.disabled is False
    assert set(user.scopes) == {Scope.ME, Scope.ITEMS}

    # Log in as them, twice: two sessions.
    mine = bearer(checked_token(log_in(username, password)))
    other = bearer(checked_token(log_in(username, password)))
    me = read_current_user.sync(client=other)
    assert isinstance(me, User) and me.id == user.id, me

    # Change the password from the first session: 204, no body.
    new_password = "Rb4$wN8&zP1%"
    changed = change_password.sync_detailed(
        client=mine,
        body=PasswordChange(current_password=password, new_password=new_password),
    )
    assert changed.status_code == HTTPStatus.NO_CONTENT, changed.content
    assert changed.content == b""
    # The other session ended at once (the typed 401); the caller's lives on.
    assert_session_ended(other)
    me = read_current_user.sync(client=mine)
    assert isinstance(me, User) and me.id == user.id, me
    # The old password no longer logs in; the new one does.
    assert log_in(username, password).status_code == HTTPStatus.UNAUTHORIZED
    checked_token(log_in(username, new_password))

    # As the demo admin, with `admin` asked for by name: page through every user, one a page.
    response = log_in("admin", "secret3", scope="me items admin")
    assert response.status_code == HTTPStatus.OK, response.content
    token = response.parsed
    assert isinstance(token, AccessToken), token
    assert set(token.scope.split()) == {"me", "items", "admin"}
    seen: list[AdminUser] = []
    cursor = None
    with bearer(token) as admin:
        for _ in range(1000):
            page = list_users.sync_detailed(
                client=admin, limit=1, **({} if cursor is None else {"cursor": cursor})
            )
            assert page.status_code == HTTPStatus.OK, page.content
            assert isinstance(page.parsed, UserList), page.parsed
            assert len(page.parsed.users) <= 1, page.parsed
            assert all(isinstance(u, AdminUser) for u in page.parsed.users), page.parsed
            seen.extend(page.parsed.users)
            cursor = page.parsed.next_cursor
            if cursor is None:
                break
        else:
            raise AssertionError("next_cursor never became null")
    names = [u.username for u in seen]
    assert len(names) == len(set(names)), f"a user was listed twice: {names}"
    assert len({u.id for u in seen}) == len(seen), names
    for expected in ("johndoe", "alice", "admin", username):
        assert names.count(expected) == 1, (expected, names)
    # By username without regard to case.
    assert names == sorted(names, key=str.casefold), names
    listed = {u.username: u for u in seen}
    assert listed["alice"].disabled is True
    assert Scope.ADMIN in listed["admin"].scopes
    assert listed[username].id == user.id
    assert listed[username].last_login_at is not None

    # The audit log, as the admin: the new account's signup and password change, by filters.
    with bearer(token) as admin:
        for kind, detail in (
            (AuditEventType.USER_SIGNED_UP, {"username": username, "scopes": ["me", "items"]}),
            (AuditEventType.PASSWORD_CHANGED, {"sessions_ended": 1}),
        ):
            page = list_audit_events.sync_detailed(client=admin, user_id=user.id, type_=kind)
            assert page.status_code == HTTPStatus.OK, page.content
            assert isinstance(page.parsed, AuditEventList), page.parsed
            assert page.parsed.next_cursor is None, page.parsed
            assert len(page.parsed.events) == 1, page.parsed
            event = page.parsed.events[0]
            assert isinstance(event, AuditEvent), event
            assert event.type_ == kind, event
            assert event.user_id == user.id and event.actor == str(user.id), event
            assert isinstance(event.occurred_at, datetime), event
            assert event.detail.to_dict() == detail, event
        # A bad filter is the typed 422.
        refused = list_audit_events.sync_detailed(client=admin, limit=0)
        assert refused.status_code == HTTPStatus.UNPROCESSABLE_ENTITY, refused.content


def test_api_key():
    with authenticated() as client:
        # Create a key from a login: 201, and the key, in this answer only.
        response = create_api_key.sync_detailed(
            client=client, body=ApiKeyCreate(name="sdk-python", scopes=[Scope.ME, Scope.ITEMS])
        )
        assert response.status_code == HTTPStatus.CREATED, response.content
        created = response.parsed
        assert isinstance(created, ApiKeyCreated), created
        assert created.name == "sdk-python"
        assert set(created.scopes) == {Scope.ME, Scope.ITEMS}
        assert created.created_at <= datetime.now(UTC), created
        assert created.expires_at is None and created.last_used_at is None, created
        assert created.key.startswith("pcl_") and len(created.key) == 75, created.key

        # A new client with the key as its token: it goes wherever an access token goes.
        with AuthenticatedClient(
            base_url=BASE_URL, token=created.key, raise_on_unexpected_status=True
        ) as keyed:
            me = read_current_user.sync(client=keyed)
            assert isinstance(me, User), me
            assert me.username == "johndoe"
            items = list_items.sync(client=keyed)
            assert isinstance(items, list), items
            assert all(isinstance(item, Item) and item.owner == "johndoe" for item in items), items

            # Listed, without the key (no member the model does not know, none in the JSON).
            listed = list_api_keys.sync_detailed(client=keyed)
            assert listed.status_code == HTTPStatus.OK, listed.content
            assert isinstance(listed.parsed, list), listed.parsed
            assert all(isinstance(key, ApiKey) for key in listed.parsed), listed.parsed
            mine = [key for key in listed.parsed if key.id == created.id]
            assert len(mine) == 1, listed.parsed
            assert mine[0].name == "sdk-python"
            assert set(mine[0].scopes) == {Scope.ME, Scope.ITEMS}
            assert mine[0].created_at == created.created_at
            assert mine[0].expires_at is None, mine[0]
            assert mine[0].additional_properties == {}, mine[0]
            assert all("key" not in key for key in json.loads(listed.content)), listed.content

            # The key deletes itself: 204, no body; from then on it gets the typed 401.
            deleted = delete_api_key.sync_detailed(client=keyed, id=created.id)
            assert deleted.status_code == HTTPStatus.NO_CONTENT, deleted.content
            assert deleted.content == b""
            assert_session_ended(keyed)

        # No longer listed; deleted already: the typed 404.
        keys = list_api_keys.sync(client=client)
        assert isinstance(keys, list), keys
        assert created.id not in {key.id for key in keys}, keys
        again = delete_api_key.sync_detailed(client=client, id=created.id)
        assert again.status_code == HTTPStatus.NOT_FOUND, again.content
        assert isinstance(again.parsed, Error), again.parsed
        assert again.parsed.detail == "API key not found"
