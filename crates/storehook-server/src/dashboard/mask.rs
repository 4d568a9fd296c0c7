//! Masks secrets and tokens in a decoded payload before the detail view
//! shows it. Adapters decide what `decoded` holds; this is the dashboard's
//! own guard, by key name and by value shape.

use serde_json::Value;

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

/// Apple's signed blobs: JWS strings that hold the decoded data again.
const SIGNED_KEYS: &[&str] = &[
    "signedpayload",
    "signedtransactioninfo",
    "signedrenewalinfo",
    "signedapptransactioninfo",
];

/// A copy of `value` with secrets hidden and tokens shortened.
pub fn mask(value: &Value) -> Value {
    mask_inner(value, 0)
}

fn mask_inner(value: &Value, depth: usize) -> Value {
    if depth > 64 {
        return Value::String("[nested too deep]".into());
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), mask_field(k, v, depth)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| mask_inner(v, depth + 1)).collect())
        }
        Value::String(s) if looks_secret(s) => Value::String(shorten(s)),
        other => other.clone(),
    }
}

fn mask_field(key: &str, value: &Value, depth: usize) -> Value {
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
        TOKEN_KEY_PARTS.iter().any(|p| k.contains(p)) || SIGNED_KEYS.contains(&k.as_str());
    match value {
        Value::String(s) if tokenish => Value::String(shorten(s)),
        Value::Number(n) if tokenish => Value::String(shorten(&n.to_string())),
        other => mask_inner(other, depth + 1),
    }
}

/// Values that are secrets whatever their key: JWS/JWT compact strings,
/// Stripe keys and webhook secrets, bearer credentials.
fn looks_secret(s: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "whsec_", "sk_live_", "sk_test_", "rk_live_", "rk_test_", "Bearer ", "bearer ",
    ];
    if PREFIXES.iter().any(|p| s.starts_with(p)) {
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
            "api_key": 12345,
            "nested": [{"Authorization": "Bearer abc"}, "whsec_abcdefghijklmnopqrstuvwxyz"],
            "signedDate": 1_700_000_000_000_i64,
            "signedPayload": "eyJhbGciOiJFUzI1NiJ9.eyJub3RpZmljYXRpb25UeXBlIjoiVEVTVCJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU",
            "appAccountToken": null,
            "productId": "monthly",
        });
        let masked = mask(&decoded);
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
        assert!(!text.contains("c2lnbmF0dXJlLWJ5dGVzLWhlcmU"), "{text}");
        // Timestamps named "signed…" and ordinary fields stay.
        assert_eq!(masked["signedDate"], 1_700_000_000_000_i64);
        assert_eq!(masked["productId"], "monthly");
        assert_eq!(masked["message"]["messageId"], "123");
        assert_eq!(masked["appAccountToken"], Value::Null);
    }
}
