"""The scenario, through the client openapi-python-client generated from ../../openapi.json.

Run by ../run, which generates the package into ./generated/portcullis_client and sets
PORTCULLIS_URL to a running `portcullis serve --demo`.
"""

import os
import sys
from http import HTTPStatus
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "generated"))

from portcullis_client import AuthenticatedClient, Client  # noqa: E402
from portcullis_client.api.auth import login_for_access_token  # noqa: E402
from portcullis_client.api.items import create_item, list_items  # noqa: E402
from portcullis_client.api.users import read_current_user  # noqa: E402
from portcullis_client.models import (  # noqa: E402
    AccessToken,
    Item,
    ItemCreate,
    OAuthErrorCode,
    Scope,
    TokenErrorBody,
    TokenRequest,
    User,
)

BASE_URL = os.environ["PORTCULLIS_URL"]


def log_in(username: str, password: str):
    with Client(base_url=BASE_URL, raise_on_unexpected_status=True) as client:
        return login_for_access_token.sync_detailed(
            client=client, body=TokenRequest(username=username, password=password)
        )


def authenticated() -> AuthenticatedClient:
    response = log_in("johndoe", "secret")
    assert response.status_code == HTTPStatus.OK, response.content
    token = response.parsed
    assert isinstance(token, AccessToken), token
    assert token.token_type == "bearer"
    assert token.expires_in > 0
    assert set(token.scope.split()) == {"me", "items"}
    return AuthenticatedClient(
        base_url=BASE_URL, token=token.access_token, raise_on_unexpected_status=True
    )


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
