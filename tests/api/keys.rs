//! Asymmetric signing keys, seen from outside: tokens name a published key and verify with it
//! under an independent implementation (`ring`); rotation and retirement; the algorithm pinned
//! by configuration (a key of the other algorithm is published but neither signs nor
//! verifies); a key sealed under another secret skipped rather than failing every login; and
//! the two discovery documents, `/.well-known/jwks.json` and
//! `/.well-known/oauth-authorization-server`.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use portcullis::{
    auth::keys::{self, KeyAlgorithm, SigningKeys},
    config::SigningAlgorithm,
};
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::*;

const USERNAME: &str = "alice";
const PASSWORD: &str = "pw-alice-keys";
const PUBLIC_URL: &str = "https://auth.example.com";

/// A server signing with `algorithm`, on a fresh database, with one user.
async fn app_signing_with(algorithm: SigningAlgorithm) -> TestApp {
    let (url, data_dir) = fresh_database().await;
    let mut settings = test_settings(url);
    settings.tokens.algorithm = algorithm;
    let app = spawn_app_with(settings, data_dir).await;
    app.create_user(USERNAME, PASSWORD).await;
    app
}

async fn login(app: &TestApp) -> String {
    app.login(USERNAME, PASSWORD).await.access_token
}

/// A compact JWS taken apart by hand, so that nothing of jsonwebtoken's is trusted.
struct Jws {
    header: Value,
    claims: Value,
    /// `base64url(header).base64url(claims)`, what the signature covers.
    signing_input: String,
    signature: Vec<u8>,
}

impl Jws {
    fn parse(token: &str) -> Self {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "a compact JWS has three parts: {token}");
        let json = |part: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        Self {
            header: json(parts[0]),
            claims: json(parts[1]),
            signing_input: format!("{}.{}", parts[0], parts[1]),
            signature: URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        }
    }

    fn kid(&self) -> String {
        self.header["kid"]
            .as_str()
            .expect("the header names its key")
            .to_owned()
    }

    /// The same token with `claims` in place of its own, and its original signature.
    fn with_claims(&self, claims: &Value) -> String {
        let header = self.signing_input.split('.').next().unwrap();
        format!(
            "{header}.{}.{}",
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(&self.signature)
        )
    }
}

/// Whether `ring` accepts `signature` over `message` under the public JWK `jwk`.
fn ring_verifies(jwk: &Value, message: &[u8], signature: &[u8]) -> bool {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};
    let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    match jwk["kty"].as_str().unwrap() {
        "OKP" => UnparsedPublicKey::new(&ED25519, coordinate("x"))
            .verify(message, signature)
            .is_ok(),
        "EC" => {
            let mut point = vec![0x04];
            point.extend(coordinate("x"));
            point.extend(coordinate("y"));
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok()
        }
        other => panic!("unexpected key type {other}"),
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

async fn get(app: &TestApp, path: &str, host: Option<&str>) -> Answer {
    let mut request = app.client.get(app.url(path));
    if let Some(host) = host {
        request = request.header("Host", host);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: json_body(response).await,
    }
}

/// `GET /.well-known/jwks.json`, checked for its status and headers.
async fn jwks(app: &TestApp) -> Value {
    let answer = get(app, "/.well-known/jwks.json", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(answer.header("cache-control"), Some("public, max-age=60"));
    answer.body
}

fn published_kids(set: &Value) -> Vec<String> {
    set["keys"]
        .as_array()
        .expect("a JWK Set has a `keys` list")
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// `GET /users/me` with `token`: the status, and for a 401 its exact body and challenge.
async fn me_status(app: &TestApp, token: &str) -> u16 {
    let answer = app.get_me(token).await;
    let status = answer.status.as_u16();
    if status == 401 {
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
        assert_eq!(
            answer.body,
            json!({"detail": "Could not validate credentials"})
        );
    }
    status
}

async fn a_token_names_a_published_key_that_verifies_it(
    algorithm: SigningAlgorithm,
    alg: &str,
    kty: &str,
    crv: &str,
) {
    let app = app_signing_with(algorithm).await;

    let token = login(&app).await;
    let set = jwks(&app).await;

    let jws = Jws::parse(&token);
    assert_eq!(jws.header["alg"], alg);
    assert_eq!(jws.header["typ"], "at+jwt");
    let kid = jws.kid();
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{set}");
    let jwk = &keys[0];
    let mut members: Vec<&str> = jwk
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    let expected: &[&str] = if kty == "EC" {
        &["alg", "crv", "kid", "kty", "use", "x", "y"]
    } else {
        &["alg", "crv", "kid", "kty", "use", "x"]
    };
    assert_eq!(members, expected, "{jwk}");
    assert_eq!(
        (
            &jwk["kid"],
            &jwk["alg"],
            &jwk["kty"],
            &jwk["crv"],
            &jwk["use"]
        ),
        (
            &json!(kid),
            &json!(alg),
            &json!(kty),
            &json!(crv),
            &json!("sig")
        )
    );

    assert!(ring_verifies(
        jwk,
        jws.signing_input.as_bytes(),
        &jws.signature
    ));
    let mut elevated = jws.claims.clone();
    elevated["scope"] = json!("me items admin");
    let tampered = jws.with_claims(&elevated);
    let tampered_jws = Jws::parse(&tampered);
    assert!(!ring_verifies(
        jwk,
        tampered_jws.signing_input.as_bytes(),
        &tampered_jws.signature
    ));
    assert_eq!(me_status(&app, &tampered).await, 401);
    assert_eq!(me_status(&app, &token).await, 200);
}

#[tokio::test]
async fn an_eddsa_token_names_a_published_key_that_verifies_it() {
    a_token_names_a_published_key_that_verifies_it(
        SigningAlgorithm::EdDsa,
        "EdDSA",
        "OKP",
        "Ed25519",
    )
    .await;
}

#[tokio::test]
async fn an_es256_token_names_a_published_key_that_verifies_it() {
    a_token_names_a_published_key_that_verifies_it(SigningAlgorithm::Es256, "ES256", "EC", "P-256")
        .await;
}

/// The set's text, member for member in the order it has always been published: verifiers
/// that compare or cache the document byte for byte see no change.
#[tokio::test]
async fn the_published_key_set_keeps_its_members_in_their_order() {
    for algorithm in [SigningAlgorithm::EdDsa, SigningAlgorithm::Es256] {
        // Arrange
        let app = app_signing_with(algorithm).await;
        let kid = Jws::parse(&login(&app).await).kid();

        // Act
        let text = app
            .client
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();

        // Assert
        let jwk = &serde_json::from_str::<Value>(&text).unwrap()["keys"][0];
        let member = |name: &str| jwk[name].as_str().unwrap().to_owned();
        let expected = match algorithm {
            SigningAlgorithm::EdDsa => format!(
                r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"{kid}","alg":"EdDSA","use":"sig"}}]}}"#,
                member("x")
            ),
            _ => format!(
                r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{}","y":"{}","kid":"{kid}","alg":"ES256","use":"sig"}}]}}"#,
                member("x"),
                member("y")
            ),
        };
        assert_eq!(text, expected, "{algorithm:?}");
    }
}

#[tokio::test]
async fn after_a_rotation_new_tokens_name_the_new_key_and_old_tokens_still_work() {
    let app = app_signing_with(SigningAlgorithm::Es256).await;
    let old_token = login(&app).await;
    let old_kid = Jws::parse(&old_token).kid();

    let new_kid = keys::rotate(&app.store, &app.settings.tokens, KeyAlgorithm::ES256, false)
        .await
        .unwrap();

    assert_eq!(
        published_kids(&jwks(&app).await),
        [new_kid.clone(), old_kid]
    );
    let new_token = login(&app).await;
    let new_jws = Jws::parse(&new_token);
    assert_eq!(new_jws.kid(), new_kid);
    assert_eq!(new_jws.header["alg"], "ES256");
    assert_eq!(me_status(&app, &new_token).await, 200);
    assert_eq!(me_status(&app, &old_token).await, 200);
}

/// A token signed with the stored key `kid` (of `algorithm`), claiming a live session of
/// `USERNAME`: everything about it is valid but, perhaps, its algorithm.
async fn token_signed_with(app: &TestApp, algorithm: SigningAlgorithm, kid: &str) -> String {
    let mut settings = app.settings.tokens.clone();
    settings.algorithm = algorithm;
    let signer = SigningKeys::start(app.store.clone(), &settings)
        .await
        .unwrap()
        .signer()
        .await
        .unwrap();
    assert_eq!(signer.kid, kid, "the newest key of {algorithm:?}");
    let user = app
        .store
        .find_user_by_username(&portcullis::domain::Username::parse(USERNAME).unwrap())
        .await
        .unwrap()
        .unwrap();
    let subject = app.start_session(user.id).await;
    let mut header = jsonwebtoken::Header::new(signer.algorithm);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &valid_claims(subject, "me"), &signer.key).unwrap()
}

#[tokio::test]
async fn a_key_of_the_other_algorithm_is_published_but_neither_signs_nor_verifies() {
    for (configured, other, other_configured, other_alg) in [
        (
            SigningAlgorithm::EdDsa,
            KeyAlgorithm::ES256,
            SigningAlgorithm::Es256,
            "ES256",
        ),
        (
            SigningAlgorithm::Es256,
            KeyAlgorithm::EDDSA,
            SigningAlgorithm::EdDsa,
            "EdDSA",
        ),
    ] {
        let app = app_signing_with(configured).await;
        let before = login(&app).await;
        let current = Jws::parse(&before).kid();

        let other_kid = keys::rotate(&app.store, &app.settings.tokens, other, false)
            .await
            .unwrap();

        // Published ahead of a switch, newest first...
        assert_eq!(
            published_kids(&jwks(&app).await),
            [other_kid.clone(), current.clone()]
        );
        // ...but the configured algorithm's key still signs...
        let after = login(&app).await;
        assert_eq!(Jws::parse(&after).kid(), current, "{configured:?}");
        assert_eq!(me_status(&app, &after).await, 200);
        // ...and a token signed with the other key, naming it, for a live session, is refused.
        let foreign = token_signed_with(&app, other_configured, &other_kid).await;
        let jws = Jws::parse(&foreign);
        assert_eq!(jws.header["alg"], other_alg);
        let published = jwks(&app).await;
        assert!(
            ring_verifies(
                &published["keys"][0],
                jws.signing_input.as_bytes(),
                &jws.signature
            ),
            "a genuine signature of a published key"
        );
        assert_eq!(me_status(&app, &foreign).await, 401, "{configured:?}");
    }
}

#[tokio::test]
async fn servers_configured_with_eddsa_and_es256_refuse_each_others_tokens() {
    // Two servers on one database and secret: the only difference is the configured algorithm.
    let (url, data_dir) = fresh_database().await;
    let mut settings = test_settings(url.clone());
    settings.tokens.algorithm = SigningAlgorithm::EdDsa;
    let eddsa = spawn_app_with(settings, data_dir).await;
    let mut settings = test_settings(url);
    settings.tokens.algorithm = SigningAlgorithm::Es256;
    let es256 = spawn_app_with(settings, None).await;
    eddsa.create_user(USERNAME, PASSWORD).await;

    let eddsa_token = login(&eddsa).await;
    let es256_token = login(&es256).await;

    let (ed_kid, es_kid) = (
        Jws::parse(&eddsa_token).kid(),
        Jws::parse(&es256_token).kid(),
    );
    assert_eq!(Jws::parse(&eddsa_token).header["alg"], "EdDSA");
    assert_eq!(Jws::parse(&es256_token).header["alg"], "ES256");
    // Both publish both keys (newest first: the ES256 server created its key second).
    for app in [&eddsa, &es256] {
        assert_eq!(
            published_kids(&jwks(app).await),
            [es_kid.clone(), ed_kid.clone()]
        );
    }
    assert_eq!(me_status(&eddsa, &eddsa_token).await, 200);
    assert_eq!(me_status(&es256, &es256_token).await, 200);
    assert_eq!(me_status(&eddsa, &es256_token).await, 401);
    assert_eq!(me_status(&es256, &eddsa_token).await, 401);
    // Logging in again does not change that: each keeps its own algorithm's key.
    assert_eq!(Jws::parse(&login(&eddsa).await).kid(), ed_kid);
    assert_eq!(Jws::parse(&login(&es256).await).kid(), es_kid);
}

#[tokio::test]
async fn switching_the_configured_algorithm_signs_with_the_key_made_ahead() {
    let (url, data_dir) = fresh_database().await;
    let mut settings = test_settings(url.clone());
    settings.tokens.algorithm = SigningAlgorithm::EdDsa;
    let before = spawn_app_with(settings, data_dir).await;
    before.create_user(USERNAME, PASSWORD).await;
    let old_token = login(&before).await;
    let es_kid = keys::rotate(
        &before.store,
        &before.settings.tokens,
        KeyAlgorithm::ES256,
        false,
    )
    .await
    .unwrap();
    assert_eq!(Jws::parse(&login(&before).await).header["alg"], "EdDSA");

    // The same database, restarted with ES256.
    let mut settings = test_settings(url);
    settings.tokens.algorithm = SigningAlgorithm::Es256;
    let after = spawn_app_with(settings, None).await;

    let new_token = login(&after).await;
    let jws = Jws::parse(&new_token);
    assert_eq!((jws.kid(), &jws.header["alg"]), (es_kid, &json!("ES256")));
    assert_eq!(me_status(&after, &new_token).await, 200);
    assert_eq!(
        me_status(&after, &old_token).await,
        401,
        "the EdDSA tokens from before the switch"
    );
}

#[tokio::test]
async fn a_key_sealed_under_another_secret_is_refused_then_skipped_when_forced() {
    let app = app_signing_with(SigningAlgorithm::EdDsa).await;
    let good = Jws::parse(&login(&app).await).kid();
    let mut wrong = app.settings.tokens.clone();
    wrong.secret = std::sync::Arc::new(secrecy::SecretBox::new(
        b"another-secret-of-at-least-thirty-two-bytes"
            .to_vec()
            .into(),
    ));

    let refused = keys::rotate(&app.store, &wrong, KeyAlgorithm::EDDSA, false).await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .starts_with("the configured JWT secret does not open the stored signing keys"),
    );
    assert_eq!(
        published_kids(&jwks(&app).await),
        std::slice::from_ref(&good)
    );

    // Forced: the newest key is one this server cannot decrypt. Logins go on with the newest
    // key it can (and the skipped key is logged once, not at every login).
    let bad = keys::rotate(&app.store, &wrong, KeyAlgorithm::EDDSA, true)
        .await
        .unwrap();
    // Tagged under the other secret, it is not authentic here: neither published nor used.
    assert!(!published_kids(&jwks(&app).await).contains(&bad));
    assert_eq!(
        published_kids(&jwks(&app).await),
        std::slice::from_ref(&good)
    );
    for _ in 0..2 {
        let token = login(&app).await;
        assert_eq!(Jws::parse(&token).kid(), good);
        assert_eq!(me_status(&app, &token).await, 200);
    }
}

#[tokio::test]
async fn a_retired_key_leaves_the_key_set() {
    let app = app_signing_with(SigningAlgorithm::EdDsa).await;
    let old_kid = Jws::parse(&login(&app).await).kid();
    let new_kid = keys::rotate(&app.store, &app.settings.tokens, KeyAlgorithm::EDDSA, false)
        .await
        .unwrap();

    assert!(
        keys::retire(&app.store, &app.settings.tokens, &old_kid)
            .await
            .unwrap()
    );

    assert_eq!(published_kids(&jwks(&app).await), [new_kid]);
}

/// The key of a token already presented is cached: the per-request check (the session query,
/// which also requires the token's key not to be retired) is what notices the retirement.
#[tokio::test]
async fn a_token_signed_with_a_key_retired_since_its_last_use_is_refused() {
    let app = app_signing_with(SigningAlgorithm::EdDsa).await;
    let old_token = login(&app).await;
    assert_eq!(me_status(&app, &old_token).await, 200);
    keys::rotate(&app.store, &app.settings.tokens, KeyAlgorithm::EDDSA, false)
        .await
        .unwrap();
    let new_token = login(&app).await;

    assert!(
        keys::retire(
            &app.store,
            &app.settings.tokens,
            &Jws::parse(&old_token).kid()
        )
        .await
        .unwrap()
    );

    assert_eq!(me_status(&app, &old_token).await, 401);
    assert_eq!(me_status(&app, &new_token).await, 200);
}

#[tokio::test]
async fn a_token_signed_with_a_key_retired_before_its_first_use_is_refused() {
    let app = app_signing_with(SigningAlgorithm::EdDsa).await;
    let old_token = login(&app).await;
    keys::rotate(&app.store, &app.settings.tokens, KeyAlgorithm::EDDSA, false)
        .await
        .unwrap();

    assert!(
        keys::retire(
            &app.store,
            &app.settings.tokens,
            &Jws::parse(&old_token).kid()
        )
        .await
        .unwrap()
    );

    assert_eq!(me_status(&app, &old_token).await, 401);
}

#[tokio::test]
async fn when_every_key_is_retired_the_next_login_creates_a_new_one() {
    let app = app_signing_with(SigningAlgorithm::Es256).await;
    let old_kid = Jws::parse(&login(&app).await).kid();
    assert!(
        keys::retire(&app.store, &app.settings.tokens, &old_kid)
            .await
            .unwrap()
    );
    assert_eq!(jwks(&app).await, json!({"keys": []}));

    let token = login(&app).await;

    let jws = Jws::parse(&token);
    assert_ne!(jws.kid(), old_kid);
    assert_eq!(jws.header["alg"], "ES256");
    assert_eq!(published_kids(&jwks(&app).await), [jws.kid()]);
    assert_eq!(me_status(&app, &token).await, 200);
}

#[tokio::test]
async fn servers_pinned_to_one_algorithm_refuse_tokens_of_the_other() {
    // Two servers on one database and secret: the only difference is the configured algorithm.
    let (url, data_dir) = fresh_database().await;
    let mut settings = test_settings(url.clone());
    settings.tokens.algorithm = SigningAlgorithm::EdDsa;
    let eddsa = spawn_app_with(settings, data_dir).await;
    let hs256 = spawn_app_with(test_settings(url), None).await;
    let user = eddsa.create_user(USERNAME, PASSWORD).await;
    let eddsa_token = login(&eddsa).await;
    let hs256_token = login(&hs256).await;
    assert_eq!(Jws::parse(&hs256_token).header["alg"], "HS256");

    assert_eq!(me_status(&eddsa, &eddsa_token).await, 200);
    assert_eq!(me_status(&hs256, &hs256_token).await, 200);
    assert_eq!(me_status(&hs256, &eddsa_token).await, 401);
    assert_eq!(me_status(&eddsa, &hs256_token).await, 401);

    // Naming the real key does not make another algorithm acceptable: the secret, the public
    // key used as an HMAC secret (algorithm confusion), or no signature at all.
    let kid = Jws::parse(&eddsa_token).kid();
    let public_x = jwks(&eddsa).await["keys"][0]["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let claims = valid_claims(user.id, "me");
    let hs256_header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
    let forged = [
        sign(hs256_header.clone(), claims.clone(), TEST_SECRET),
        sign(
            hs256_header.clone(),
            claims.clone(),
            &URL_SAFE_NO_PAD.decode(&public_x).unwrap(),
        ),
        sign(hs256_header, claims.clone(), public_x.as_bytes()),
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        ),
    ];
    for token in forged {
        assert_eq!(me_status(&eddsa, &token).await, 401, "{token}");
    }
}

#[tokio::test]
async fn an_hs256_server_publishes_no_key() {
    let app = app_signing_with(SigningAlgorithm::Hs256).await;
    assert!(Jws::parse(&login(&app).await).header.get("kid").is_none());
    assert_eq!(jwks(&app).await, json!({"keys": []}));
}

#[tokio::test]
async fn an_hs256_server_publishes_a_key_made_ahead_of_a_switch_but_does_not_sign_with_it() {
    let app = app_signing_with(SigningAlgorithm::Hs256).await;

    let kid = keys::rotate(&app.store, &app.settings.tokens, KeyAlgorithm::EDDSA, false)
        .await
        .unwrap();

    assert_eq!(published_kids(&jwks(&app).await), [kid]);
    let jws = Jws::parse(&login(&app).await);
    assert_eq!(jws.header["alg"], "HS256");
    assert!(jws.header.get("kid").is_none());
}

fn metadata_based_on(base: &str) -> Value {
    json!({
        "issuer": ISSUER,
        "token_endpoint": format!("{base}/token"),
        "revocation_endpoint": format!("{base}/token/revoke"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": [],
        "scopes_supported": ["me", "items", "admin"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "service_documentation": format!("{base}/docs"),
    })
}

fn assert_metadata(answer: &Answer, base: &str) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, metadata_based_on(base));
    assert_eq!(
        answer.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(answer.header("cache-control"), Some("public, max-age=60"));
}

const METADATA: &str = "/.well-known/oauth-authorization-server";

#[tokio::test]
async fn the_server_metadata_is_based_on_the_configured_public_url() {
    let (url, data_dir) = fresh_database().await;
    let mut settings = test_settings(url);
    settings.public_url = Some(PUBLIC_URL.into());
    let app = spawn_app_with(settings, data_dir).await;

    let answer = get(&app, METADATA, Some("elsewhere.example.org")).await;

    assert_metadata(&answer, PUBLIC_URL);
}

#[tokio::test]
async fn without_a_public_url_the_server_metadata_is_based_on_the_request_host() {
    let app = spawn_app().await;

    assert_metadata(
        &get(&app, METADATA, None).await,
        &format!("http://{}", app.address),
    );
    for host in ["auth.internal:8443", "localhost", "[::1]:8000"] {
        assert_metadata(
            &get(&app, METADATA, Some(host)).await,
            &format!("http://{host}"),
        );
    }
}

#[tokio::test]
async fn a_host_that_cannot_begin_a_url_is_refused() {
    let app = spawn_app().await;
    for host in [
        "evil.example/path",
        "user@auth.example.com",
        "auth example com",
        "auth.example.com:http",
        "",
    ] {
        let answer = get(&app, METADATA, Some(host)).await;
        assert_eq!(answer.status, 400, "{host:?}: {}", answer.body);
        assert_eq!(
            answer.body,
            json!({"detail": "Invalid Host header"}),
            "{host:?}"
        );
    }
}

#[tokio::test]
async fn a_request_without_host_is_refused() {
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();

    // HTTP/1.0 allows a request without `Host`.
    stream
        .write_all(format!("GET {METADATA} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();

    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 400 "), "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({"detail": "Invalid Host header"})
    );
}

#[test]
fn the_discovery_documents_are_declared_public_and_cacheable() {
    let doc: Value = serde_json::from_str(&portcullis::api::openapi_document()).unwrap();
    for (path, schema) in [
        ("/.well-known/jwks.json", "JwkSet"),
        (METADATA, "AuthorizationServerMetadata"),
    ] {
        let operation = &doc["paths"][path]["get"];
        assert_eq!(operation["security"], json!([]), "{path}");
        assert_eq!(operation["tags"], json!(["Discovery"]), "{path}");
        let ok = &operation["responses"]["200"];
        assert_eq!(
            ok["content"]["application/json; charset=utf-8"]["schema"]["$ref"],
            format!("#/components/schemas/{schema}"),
            "{path}"
        );
        assert!(ok["headers"]["Cache-Control"].is_object(), "{path}");
    }
    assert_eq!(
        doc["paths"][METADATA]["get"]["responses"]["400"]["content"]["application/json; charset=utf-8"]
            ["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    assert!(
        doc["paths"]["/.well-known/jwks.json"]["get"]["responses"]["503"]["headers"]["Retry-After"]
            .is_object()
    );
}

// --- Authenticated keys: the database alone adds no verifier and revives no key -------------

/// A key pair made outside portcullis (by whoever can write to the database), as the public
/// JWK a row would hold, its RFC 7638 thumbprint (a plausible kid), and a jsonwebtoken signer.
fn forged_key(algorithm: KeyAlgorithm) -> (Value, String, jsonwebtoken::EncodingKey) {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use sha2::Digest as _;
    let seed: [u8; 32] = rand::random();
    let (jwk, canonical, encoding) = match SigningAlgorithm::from(algorithm) {
        SigningAlgorithm::Hs256 => unreachable!("a key algorithm is never HS256"),
        SigningAlgorithm::EdDsa => {
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let x = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig"}),
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
                jsonwebtoken::EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes()),
            )
        }
        SigningAlgorithm::Es256 => {
            let key = p256::SecretKey::from_slice(&seed).unwrap();
            let point = key.public_key().to_encoded_point(false);
            let x = URL_SAFE_NO_PAD.encode(point.x().unwrap());
            let y = URL_SAFE_NO_PAD.encode(point.y().unwrap());
            (
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "alg": "ES256", "use": "sig"}),
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
                jsonwebtoken::EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
            )
        }
    };
    let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()));
    let mut jwk = jwk;
    jwk["kid"] = json!(kid);
    (jwk, kid, encoding)
}

#[tokio::test]
async fn a_key_row_inserted_by_hand_neither_verifies_a_forged_admin_token_nor_is_published() {
    for (configured, algorithm) in [
        (SigningAlgorithm::EdDsa, KeyAlgorithm::EDDSA),
        (SigningAlgorithm::Es256, KeyAlgorithm::ES256),
    ] {
        for tag in [None, Some("v1.bm90LWEtdGFn")] {
            // Arrange: a real user with a live session (the forged token names it).
            let case = format!("{algorithm} with tag {tag:?}");
            let app = app_signing_with(configured).await;
            let real = login(&app).await;
            let claims = Jws::parse(&real).claims;
            // Inserted by hand through the store's connection, as an attacker with write access
            // to the database would: the public half well formed and its kid right, only its
            // tag (absent, as a row from before tags, or made up) not the service's.
            let (jwk, kid, encoding) = forged_key(algorithm);
            use sea_orm::{ActiveModelTrait as _, ActiveValue::Set};
            portcullis::db::entities::signing_key::ActiveModel {
                kid: Set(kid.clone()),
                algorithm: Set(algorithm.as_str().into()),
                public_jwk: Set(jwk.to_string()),
                encrypted_private_key: Set("v1.AAAA".into()),
                created_at: Set(chrono::Utc::now()),
                retired_at: Set(None),
                authentication_tag: Set(tag.map(str::to_owned)),
            }
            .insert(app.store.connection())
            .await
            .unwrap();
            let mut header = jsonwebtoken::Header::new(algorithm.jwt());
            header.typ = Some("at+jwt".into());
            header.kid = Some(kid.clone());
            let mut forged_claims = claims.clone();
            forged_claims["scope"] = json!("me items admin");
            let forged = jsonwebtoken::encode(&header, &forged_claims, &encoding).unwrap();

            // Act
            let answer = app.get_me(&forged).await;
            let published = published_kids(&jwks(&app).await);

            // Assert
            assert_eq!(answer.status, 401, "{case}");
            assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{case}");
            assert_eq!(
                answer.body,
                json!({"detail": "Could not validate credentials"}),
                "{case}"
            );
            assert!(!published.contains(&kid), "{case}: {published:?}");
            assert_eq!(published, [Jws::parse(&real).kid()], "{case}");
            // Logins go on with the real key, and a restarted instance does not pick it up.
            let again = login(&app).await;
            assert_eq!(Jws::parse(&again).kid(), Jws::parse(&real).kid(), "{case}");
            let restarted = SigningKeys::start(app.store.clone(), &app.settings.tokens)
                .await
                .unwrap();
            assert!(restarted.verifier(&kid).await.unwrap().is_none(), "{case}");
        }
    }
}

#[tokio::test]
async fn a_retired_key_set_back_to_active_by_hand_stays_retired() {
    use portcullis::db::entities::signing_key;
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
    for configured in [SigningAlgorithm::EdDsa, SigningAlgorithm::Es256] {
        // Arrange: a token of the old key, used once (its verifier is cached), then the key
        // retired and "un-retired" with an UPDATE.
        let app = app_signing_with(configured).await;
        let old_token = login(&app).await;
        let old_kid = Jws::parse(&old_token).kid();
        assert_eq!(me_status(&app, &old_token).await, 200);
        let algorithm = KeyAlgorithm::default_for(configured);
        let new_kid = keys::rotate(&app.store, &app.settings.tokens, algorithm, false)
            .await
            .unwrap();
        assert!(
            keys::retire(&app.store, &app.settings.tokens, &old_kid)
                .await
                .unwrap()
        );
        signing_key::Entity::update_many()
            .col_expr(
                signing_key::Column::RetiredAt,
                Option::<chrono::DateTime<chrono::Utc>>::None.into(),
            )
            .filter(signing_key::Column::Kid.eq(&old_kid))
            .exec(app.store.connection())
            .await
            .unwrap();

        // Act & Assert: refused by this instance (cached verifier) and a restarted one,
        // unpublished, and at /token/revoke a token of it ends nothing.
        assert_eq!(me_status(&app, &old_token).await, 401, "{configured:?}");
        assert_eq!(
            published_kids(&jwks(&app).await),
            std::slice::from_ref(&new_kid)
        );
        let restarted = SigningKeys::start(app.store.clone(), &app.settings.tokens)
            .await
            .unwrap();
        assert!(restarted.verifier(&old_kid).await.unwrap().is_none());
        assert_eq!(kids_of(restarted.jwks().await.unwrap()), [new_kid]);
        // Clearing the tag too (a row "from before tags") does not help: retiring wiped the
        // private half, which a tagless row must open to be accepted.
        signing_key::Entity::update_many()
            .col_expr(
                signing_key::Column::AuthenticationTag,
                Option::<String>::None.into(),
            )
            .filter(signing_key::Column::Kid.eq(&old_kid))
            .exec(app.store.connection())
            .await
            .unwrap();
        let restarted = SigningKeys::start(app.store.clone(), &app.settings.tokens)
            .await
            .unwrap();
        assert!(restarted.verifier(&old_kid).await.unwrap().is_none());
    }
}

fn kids_of(set: jsonwebtoken::jwk::JwkSet) -> Vec<String> {
    set.keys
        .into_iter()
        .map(|key| key.common.key_id.expect("a published key has a kid"))
        .collect()
}

/// `/token/revoke` holds a token to the same test as a protected request: a token signed with
/// a key retired since this instance cached it is invalid there too, so it ends nothing.
#[tokio::test]
async fn revoking_a_token_of_a_key_retired_since_it_was_cached_ends_nothing() {
    // Arrange: a session whose access token was used (its key cached), then its key retired.
    let app = app_signing_with(SigningAlgorithm::EdDsa).await;
    let login = app
        .post_token(&[("username", USERNAME), ("password", PASSWORD)])
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let access = login.body["access_token"].as_str().unwrap().to_owned();
    let refresh_token = login.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(me_status(&app, &access).await, 200);
    keys::rotate(&app.store, &app.settings.tokens, KeyAlgorithm::EDDSA, false)
        .await
        .unwrap();
    assert!(
        keys::retire(&app.store, &app.settings.tokens, &Jws::parse(&access).kid())
            .await
            .unwrap()
    );

    // Act
    let answer = app.post_revoke(&[("token", &access)]).await;

    // Assert: 200 as for any invalid token, and the session lives on (its refresh token works).
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.text, "");
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let refreshed = app.post_refresh(&refresh_token, None).await;
    assert_eq!(
        refreshed.status, 200,
        "the session was not ended: {}",
        refreshed.body
    );
}
