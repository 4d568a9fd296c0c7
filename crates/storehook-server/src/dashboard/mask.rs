//! Masks secrets and tokens in a decoded payload before the detail view
//! shows it. Adapters decide what `decoded` holds; this is the dashboard's
//! own guard, by key name and by value shape, plus the hints the registered
//! stores give (`StoreRegistration::masking`: their signed blobs, the
//! prefixes of their API keys), which apply to every payload.

use serde_json::Value;
use storehook_core::StoreRegistration;

/// What the registered stores add to the rules below.
#[derive(Debug, Default)]
pub struct Hints {
    token_keys: Vec<&'static str>,
    secret_prefixes: Vec<&'static str>,
}

impl Hints {
    pub fn of<'a>(registrations: impl IntoIterator<Item = &'a StoreRegistration>) -> Self {
        let mut hints = Self::default();
        for r in registrations {
            hints.token_keys.extend(r.masking.token_keys);
            hints.secret_prefixes.extend(r.masking.secret_prefixes);
        }
        hints
    }
}

/// Keys whose values are hidden entirely (normalized: lowercase, no `_`/`-`).
const SECRET_KEY_PARTS: &[&str] = &[
    "secret",
    "password",
    "passwd",
    "privatekey",
    "apikey",
    "authorization",
    "credential",
    "cookie",
];

/// Keys whose values are shortened to their ends (enough to recognise one,
/// not enough to use it).
const TOKEN_KEY_PARTS: &[&str] = &["token", "signature", "jws", "jwt"];

/// A copy of `value` with secrets hidden and tokens shortened.
pub fn mask(value: &Value, hints: &Hints) -> Value {
    mask_inner(value, 0, hints)
}

fn mask_inner(value: &Value, depth: usize, hints: &Hints) -> Value {
    if depth > 64 {
        return Value::String("[nested too deep]".into());
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), mask_field(k, v, depth, hints)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| mask_inner(v, depth + 1, hints))
                .collect(),
        ),
        Value::String(s) if looks_secret(s, hints) => Value::String(shorten(s)),
        other => other.clone(),
    }
}

fn mask_field(key: &str, value: &Value, depth: usize, hints: &Hints) -> Value {
    let k: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    if value.is_null() {
        return Value::Null;
    }
    if SECRET_KEY_PARTS.iter().any(|p| k.contains(p)) {
        return Value::String("[masked]".into());
    }
    let tokenish =
        TOKEN_KEY_PARTS.iter().any(|p| k.contains(p)) || hints.token_keys.contains(&k.as_str());
    match value {
        Value::String(s) if tokenish => Value::String(shorten(s)),
        Value::Number(n) if tokenish => Value::String(shorten(&n.to_string())),
        other => mask_inner(other, depth + 1, hints),
    }
}

/// Values that are secrets whatever their key: JWS/JWT compact strings,
/// Standard Webhooks secrets (the format of this server's own webhook
/// secrets), bearer credentials, and the stores' secret prefixes.
fn looks_secret(s: &str, hints: &Hints) -> bool {
    const PREFIXES: &[&str] = &["whsec_", "Bearer ", "bearer "];
    if PREFIXES
        .iter()
        .chain(&hints.secret_prefixes)
        .any(|p| s.starts_with(p))
    {
        return true;
    }
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && s.len() >= 40
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

/// `abcd…wxyz (120 chars)`; short values disappear entirely.
fn shorten(s: &str) -> String {
    let n = s.chars().count();
    if n <= 12 {
        return "[masked]".into();
    }
    let head: String = s.chars().take(4).collect();
    let tail: String = s.chars().skip(n - 4).collect();
    format!("{head}…{tail} ({n} chars, masked)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_disappear_and_tokens_shrink() {
        let decoded = json!({
            "message": {"data": "eyJ2ZXJzaW9uIjoiMS4wIn0=", "messageId": "123"},
            "subscriptionNotification": {"purchaseToken": "opaque-purchase-token-value-0123456789"},
            "client_secret": "pi_3Abc_secret_xyz",
            "key": "sk_live_0123456789abcdef",
            "api_key": 12345,
            "nested": [{"Authorization": "Bearer abc"}, "whsec_abcdefghijklmnopqrstuvwxyz"],
            "signedDate": 1_700_000_000_000_i64,
            "signedPayload": "eyJhbGciOiJFUzI1NiJ9.eyJub3RpZmljYXRpb25UeXBlIjoiVEVTVCJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU",
            "appAccountToken": null,
            "productId": "monthly",
        });
        static HINTED: StoreRegistration = StoreRegistration {
            masking: storehook_core::Masking {
                token_keys: &["signedpayload"],
                secret_prefixes: &["sk_live_"],
            },
            ..StoreRegistration::new("hinted", "Hinted", "HINTED", |_, _| {
                Err(storehook_core::ConfigError::new("unused"))
            })
        };
        let masked = mask(&decoded, &Hints::of([&HINTED]));
        let text = masked.to_string();
        assert!(
            !text.contains("opaque-purchase-token-value-0123456789"),
            "{text}"
        );
        assert_eq!(
            masked["subscriptionNotification"]["purchaseToken"],
            "opaq…6789 (38 chars, masked)"
        );
        assert_eq!(masked["client_secret"], "[masked]");
        assert_eq!(masked["api_key"], "[masked]");
        assert_eq!(masked["nested"][0]["Authorization"], "[masked]");
        assert!(!text.contains("whsec_abcdefghijklmnopqrstuvwxyz"), "{text}");
        assert_eq!(masked["key"], "sk_l…cdef (24 chars, masked)");
        // Without the store's hint, its key prefix is just text.
        assert_eq!(
            mask(&decoded, &Hints::default())["key"],
            "sk_live_0123456789abcdef"
        );
        assert!(!text.contains("c2lnbmF0dXJlLWJ5dGVzLWhlcmU"), "{text}");
        // Timestamps named "signed…" and ordinary fields stay.
        assert_eq!(masked["signedDate"], 1_700_000_000_000_i64);
        assert_eq!(masked["productId"], "monthly");
        assert_eq!(masked["message"]["messageId"], "123");
        assert_eq!(masked["appAccountToken"], Value::Null);
    }
}
