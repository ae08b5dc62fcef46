//! What unit tests need to build keys: here and elsewhere in the crate (a database, settings),
//! and within `keys` (a secret, RFC 8037's example key, a log of errors by kid).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use secrecy::SecretBox;

use super::{SigningAlgorithm, locked, material::PrivateKey};
use crate::config::{DatabaseSettings, TokenSettings};
use crate::db::Store;

/// A migrated database in memory, gone with the last connection of its pool.
pub async fn store() -> Store {
    // One connection: each SQLite connection to `:memory:` is a database of its own.
    let store = Store::connect(&DatabaseSettings {
        url: "sqlite::memory:".into(),
        max_connections: std::num::NonZeroU32::new(1),
    })
    .await
    .expect("an in-memory database opens");
    store.migrate().await.expect("migrations apply");
    store
}

pub fn settings(secret: &[u8], algorithm: SigningAlgorithm) -> TokenSettings {
    TokenSettings {
        secret: Arc::new(SecretBox::new(secret.to_vec().into_boxed_slice())),
        algorithm,
        ttl: Duration::from_secs(1800),
        issuer: "portcullis".into(),
        audience: "portcullis".into(),
    }
}

/// The JWT secret of the tests in `keys`.
pub(super) const SECRET: &[u8] = &[7u8; 32];

/// RFC 8037 Appendix A.1's Ed25519 private key (`d`) and A.2's public key (`x`).
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
pub(super) const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

pub(super) fn rfc8037_key() -> PrivateKey {
    let d = URL_SAFE_NO_PAD.decode(RFC8037_D).unwrap();
    PrivateKey::from_bytes(super::KeyAlgorithm::EDDSA, &d).unwrap()
}

/// The kids of a JWK Set, in its order.
pub(super) fn kids(set: JwkSet) -> Vec<String> {
    set.keys
        .into_iter()
        .map(|key| key.common.key_id.expect("a published key has a kid"))
        .collect()
}

/// Counts the error events naming each kid.
#[derive(Clone, Default)]
pub(super) struct ErrorsByKid(pub(super) Arc<Mutex<HashMap<String, usize>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorsByKid {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Kid(Option<String>);
        impl tracing::field::Visit for Kid {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "kid" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "kid" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        if *event.metadata().level() != tracing::Level::ERROR {
            return;
        }
        let mut kid = Kid(None);
        event.record(&mut kid);
        *locked(&self.0)
            .entry(kid.0.unwrap_or_default())
            .or_default() += 1;
    }
}
