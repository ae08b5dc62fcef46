use crate::helpers::spawn_app;

const REGENERATE: &str = "cargo run --quiet -- openapi > openapi.json";

#[test]
fn the_committed_openapi_json_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"))
        .unwrap_or_default();
    let generated = portcullis::api::openapi_document();
    assert!(
        committed == generated,
        "openapi.json is stale: regenerate it with `{REGENERATE}` and commit it"
    );
}

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let app = spawn_app().await;
    let response = app
        .request(reqwest::Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        response.text().await.unwrap(),
        portcullis::api::openapi_document()
    );
}

#[tokio::test]
async fn swagger_ui_is_served_at_docs() {
    let app = spawn_app().await;
    let response = app
        .request(reqwest::Method::GET, "/docs")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "the page must load Swagger UI");
    assert!(
        html.contains(r#""tokenUrl": "/token""#),
        "the inlined spec must log in at /token"
    );
}
