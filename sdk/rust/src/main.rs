//! The scenario, through the client progenitor generated (build.rs) from ../../openapi.json.
//! Usage: portcullis-sdk-rust <base URL of a running `portcullis serve --demo`>
use std::collections::BTreeSet;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

#[allow(clippy::all, dead_code, unused_imports)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/codegen.rs"));
}

use generated::{Client, Error, types};

fn token_request(username: &str, password: &str) -> types::TokenRequest {
    types::TokenRequest {
        username: username.parse().expect("a valid username"),
        password: password.parse().expect("a valid password"),
        grant_type: None,
        scope: None,
        client_id: None,
        client_secret: None,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let base_url = std::env::args()
        .nth(1)
        .expect("usage: portcullis-sdk-rust BASE_URL");
    let anonymous = Client::new(&base_url);

    // Log in: the form body.
    let token = anonymous
        .login_for_access_token(&token_request("johndoe", "secret"))
        .await
        .expect("login")
        .into_inner();
    assert_eq!(token.token_type, "bearer");
    assert!(token.expires_in > 0);
    let granted: BTreeSet<&str> = token.scope.split(' ').collect();
    assert_eq!(granted, BTreeSet::from(["items", "me"]));

    // The generated client leaves authentication to the reqwest::Client it is given.
    let mut headers = HeaderMap::new();
    let bearer = HeaderValue::from_str(&format!("Bearer {}", token.access_token)).unwrap();
    headers.insert(AUTHORIZATION, bearer);
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap();
    let client = Client::new_with_client(&base_url, http);

    // Read your account.
    let me = client
        .read_current_user()
        .await
        .expect("read me")
        .into_inner();
    assert_eq!(me.username, "johndoe");
    assert_eq!(me.email.as_deref(), Some("johndoe@example.com"));
    assert!(!me.disabled);
    let scopes: BTreeSet<String> = me.scopes.iter().map(ToString::to_string).collect();
    assert_eq!(
        scopes,
        BTreeSet::from(["items".to_owned(), "me".to_owned()])
    );
    assert!(me.scopes.contains(&types::Scope::Me));

    // Create an item (and one without a description), then list.
    let created = client
        .create_item(&types::ItemCreate {
            title: "rust sdk".parse().unwrap(),
            description: Some("from progenitor".parse().unwrap()),
        })
        .await
        .expect("create item")
        .into_inner();
    assert_eq!(created.owner, "johndoe");
    let untitled = client
        .create_item(&types::ItemCreate {
            title: "no description".parse().unwrap(),
            description: None,
        })
        .await
        .expect("create item without description")
        .into_inner();
    assert_eq!(untitled.description, None);
    let items = client.list_items().await.expect("list items").into_inner();
    let listed = items
        .iter()
        .find(|item| item.id == created.id)
        .expect("created item listed");
    assert_eq!(listed.owner, "johndoe");
    assert_eq!(listed.description.as_deref(), Some("from progenitor"));
    assert!(
        items
            .iter()
            .any(|item| item.id == untitled.id && item.description.is_none())
    );

    // An unknown item: the generated error type (404).
    match client.delete_item(&uuid::Uuid::new_v4()).await {
        Err(Error::ErrorResponse(response)) => {
            assert_eq!(response.status().as_u16(), 404);
            let body: &types::Error = &response;
            match &body.detail {
                types::ErrorDetail::String(detail) => assert_eq!(detail, "Item not found"),
                other => panic!("detail is not a message: {other:?}"),
            }
        }
        other => panic!("expected a 404 Error, got {other:?}"),
    }

    // A wrong password: the generated error type (401).
    match anonymous
        .login_for_access_token(&token_request("johndoe", "not-the-password"))
        .await
    {
        Err(Error::ErrorResponse(response)) => {
            assert_eq!(response.status().as_u16(), 401);
            let body: &types::TokenErrorBody = &response;
            match &body.detail {
                types::ErrorDetail::String(detail) => {
                    assert_eq!(detail, "Incorrect username or password")
                }
                other => panic!("detail is not a message: {other:?}"),
            }
            assert_eq!(body.error, types::OAuthErrorCode::InvalidGrant);
            assert_eq!(body.error_description, "Incorrect username or password");
        }
        other => panic!("expected a 401 TokenErrorBody, got {other:?}"),
    }

    println!("rust scenario: 5 checks passed");
}
