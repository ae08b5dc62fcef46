//! Usernames that look alike: compatibility forms and case are one account (NFKC and case
//! folding), lookalikes from other scripts cannot be created beside an existing account
//! (Unicode TS #39 skeletons, under a unique index), and accounts stored before either keep
//! working after the upgrade.

use portcullis::accounts::AccountError;

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery staple";

/// The status of a password login and, on success, whom its token names (`sub`).
async fn login_subject(app: &TestApp, username: &str, password: &str) -> (u16, Option<String>) {
    let answer = app.post_login(Login::new(username, password)).await;
    let sub = answer.body["access_token"]
        .as_str()
        .map(|token| claims(token)["sub"].as_str().unwrap().to_owned());
    (answer.status.as_u16(), sub)
}

#[tokio::test]
async fn lookalikes_of_an_existing_name_cannot_be_created() {
    // Arrange
    let app = spawn_app().await;
    app.create_user("johndoe", PASSWORD).await;

    for lookalike in [
        "JOHNDOE",
        "ｊｏｈｎｄｏｅ", // full-width
        "јohndoe",        // Cyrillic ј
        "јоhndое",        // Cyrillic ј, о, е
        "ＪＯＨＮＤＯＥ",
    ] {
        // Act
        let result = app.try_create_user(lookalike, "another password").await;

        // Assert
        assert!(
            matches!(result, Err(AccountError::UsernameTaken(_))),
            "{lookalike}: {result:?}"
        );
    }
    let users = app.store.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    // A different name is still fine.
    app.try_create_user("janedoe", "another password")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_compatibility_form_of_a_name_logs_in_to_that_account() {
    // Arrange
    let app = spawn_app().await;
    let user = app.create_user("johndoe", PASSWORD).await;

    for spelling in ["ｊｏｈｎｄｏｅ", "ＪＯＨＮＤＯＥ", "JohnDoe"] {
        // Act
        let (status, sub) = login_subject(&app, spelling, PASSWORD).await;

        // Assert
        assert_eq!(status, 200, "{spelling}");
        assert_eq!(sub, Some(user.id.to_string()), "{spelling}");
    }
    // A lookalike from another script is another (unknown) name.
    assert_eq!(login_subject(&app, "јohndoe", PASSWORD).await, (401, None));
}

#[tokio::test]
async fn accounts_stored_before_normalization_are_upgraded_and_lookalike_pairs_kept() {
    use portcullis::db::entities::user;
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
    // Arrange: the rows an older version left: lower-cased names, no skeleton — including a
    // pair that is one name now (`johndoe` and full-width `ｊｏｈｎｄｏｅ`, the latter created
    // second) and one that looks alike (`mary`, then `rnary`).
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for (placeholder, name) in [
        ("placeholder1", "JohnDoe"),
        ("placeholder2", "ｊｏｈｎｄｏｅ"),
        ("placeholder3", "Mary"),
        ("placeholder4", "rnary"),
        ("placeholder5", "Straße"),
    ] {
        let created = app.create_user(placeholder, PASSWORD).await;
        user::Entity::update_many()
            .col_expr(user::Column::Username, name.into())
            .col_expr(user::Column::UsernameNormalized, name.to_lowercase().into())
            .col_expr(
                user::Column::UsernameSkeleton,
                Option::<String>::None.into(),
            )
            .filter(user::Column::Id.eq(created.id))
            .exec(app.store.connection())
            .await
            .unwrap();
        ids.push(created.id.to_string());
        // Distinct creation times, in this order.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    // Act: what every start runs after the migrations.
    let left = app.store.normalize_usernames().await.unwrap();
    let again = app.store.normalize_usernames().await.unwrap();

    // Assert: the later of each pair is kept without a skeleton (logged), nothing failed.
    assert_eq!((left, again), (2, 2));
    // Each account still logs in by its own spelling.
    for (spelling, id) in [
        ("johndoe", &ids[0]),
        ("ｊｏｈｎｄｏｅ", &ids[1]),
        ("mary", &ids[2]),
        ("rnary", &ids[3]),
        ("STRASSE", &ids[4]),
        ("straße", &ids[4]),
    ] {
        assert_eq!(
            login_subject(&app, spelling, PASSWORD).await,
            (200, Some(id.clone())),
            "{spelling}"
        );
    }
    // And no new lookalike gets in.
    for lookalike in ["JOHNDOE", "јohndoe", "rnаry", "strasse"] {
        assert!(
            matches!(
                app.try_create_user(lookalike, "another password").await,
                Err(AccountError::UsernameTaken(_))
            ),
            "{lookalike}"
        );
    }
}
