//! Apple's wire types: the HTTP body, the decoded notification
//! (`responseBodyV2DecodedPayload`) and the nested transaction, renewal and
//! app-transaction payloads — only the fields storehook reads; the whole
//! payload is kept as JSON beside them.
//!
//! Fields are read as Apple's Python library structures them (cattrs): a
//! string field also takes a number, an integer field also takes a float or
//! a numeric string; anything else is a schema error. Unknown enum values
//! are kept as their raw strings.

use std::borrow::Cow;

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// What Apple POSTs: `{"signedPayload": "<JWS>"}`.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(rename = "signedPayload", borrow, default)]
    pub signed_payload: Option<Cow<'a, str>>,
    /// V1 notifications (deprecated by Apple) carry these two instead.
    #[serde(default)]
    pub notification_type: Option<IgnoredAny>,
    #[serde(default)]
    pub unified_receipt: Option<IgnoredAny>,
}

/// A string as cattrs' `str(value)` structures it (strings and numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer as cattrs' `int(value)` structures it (integers, floats
/// truncated, numeric strings, booleans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int(pub i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Int, E> {
                Ok(Int(i64::from(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
                let t = v.trunc();
                if t.is_finite() && t >= i64::MIN as f64 && t <= i64::MAX as f64 {
                    Ok(Int(t as i64))
                } else {
                    Err(E::custom("number out of range"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                crate::verify::python_int(&Value::String(v.to_owned()))
                    .and_then(|i| i64::try_from(i).ok())
                    .map(Int)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A boolean as cattrs' `bool(value)` structures it (Python truthiness).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Flag(crate::verify::truthy(&Value::deserialize(d)?)))
    }
}

fn text(t: &Option<Text>) -> Option<&str> {
    t.as_ref().map(|t| t.0.as_str())
}

fn int(i: &Option<Int>) -> Option<i64> {
    i.map(|i| i.0)
}

/// `responseBodyV2DecodedPayload`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NotificationPayload {
    pub notification_type: Option<Text>,
    pub subtype: Option<Text>,
    #[serde(rename = "notificationUUID")]
    pub notification_uuid: Option<Text>,
    pub data: Option<Data>,
    pub summary: Option<Summary>,
    pub external_purchase_token: Option<ExternalPurchaseToken>,
    pub app_data: Option<AppData>,
    pub version: Option<Text>,
    pub signed_date: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Data {
    pub environment: Option<Text>,
    pub app_apple_id: Option<Int>,
    pub bundle_id: Option<Text>,
    pub bundle_version: Option<Text>,
    pub signed_transaction_info: Option<Text>,
    pub signed_renewal_info: Option<Text>,
    pub status: Option<Int>,
    pub consumption_request_reason: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Summary {
    pub environment: Option<Text>,
    pub app_apple_id: Option<Int>,
    pub bundle_id: Option<Text>,
    pub product_id: Option<Text>,
    pub request_identifier: Option<Text>,
    pub succeeded_count: Option<Int>,
    pub failed_count: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExternalPurchaseToken {
    pub external_purchase_id: Option<Text>,
    pub token_creation_date: Option<Int>,
    pub app_apple_id: Option<Int>,
    pub bundle_id: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppData {
    pub app_apple_id: Option<Int>,
    pub bundle_id: Option<Text>,
    pub environment: Option<Text>,
    pub signed_app_transaction_info: Option<Text>,
}

/// `JWSTransactionDecodedPayload`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TransactionInfo {
    pub original_transaction_id: Option<Text>,
    pub transaction_id: Option<Text>,
    pub bundle_id: Option<Text>,
    pub product_id: Option<Text>,
    pub purchase_date: Option<Int>,
    pub expires_date: Option<Int>,
    #[serde(rename = "type")]
    pub kind: Option<Text>,
    pub app_account_token: Option<Text>,
    pub signed_date: Option<Int>,
    pub revocation_reason: Option<Int>,
    pub revocation_date: Option<Int>,
    pub is_upgraded: Option<Flag>,
    pub environment: Option<Text>,
    pub currency: Option<Text>,
    pub price: Option<Int>,
    pub transaction_reason: Option<Text>,
    pub offer_type: Option<Int>,
    pub offer_discount_type: Option<Text>,
}

/// `JWSRenewalInfoDecodedPayload`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RenewalInfo {
    pub expiration_intent: Option<Int>,
    pub original_transaction_id: Option<Text>,
    pub auto_renew_product_id: Option<Text>,
    pub product_id: Option<Text>,
    pub auto_renew_status: Option<Int>,
    pub is_in_billing_retry_period: Option<Flag>,
    pub grace_period_expires_date: Option<Int>,
    pub signed_date: Option<Int>,
    pub environment: Option<Text>,
    pub renewal_date: Option<Int>,
    pub app_account_token: Option<Text>,
}

/// `AppTransaction` (inside a RESCIND_CONSENT notification's `appData`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppTransaction {
    pub receipt_type: Option<Text>,
    pub app_apple_id: Option<Int>,
    pub bundle_id: Option<Text>,
    pub app_transaction_id: Option<Text>,
    pub original_platform: Option<Text>,
}

/// The app a notification is about, taken as Apple's library takes it:
/// from `data`, else `summary`, else `externalPurchaseToken` (environment
/// from the `SANDBOX` prefix of its id), else `appData`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppIdentity<'a> {
    pub bundle_id: Option<&'a str>,
    pub app_apple_id: Option<i64>,
    pub environment: Option<&'a str>,
}

impl NotificationPayload {
    pub fn identity(&self) -> AppIdentity<'_> {
        if let Some(d) = &self.data {
            AppIdentity {
                bundle_id: text(&d.bundle_id),
                app_apple_id: int(&d.app_apple_id),
                environment: text(&d.environment),
            }
        } else if let Some(s) = &self.summary {
            AppIdentity {
                bundle_id: text(&s.bundle_id),
                app_apple_id: int(&s.app_apple_id),
                environment: text(&s.environment),
            }
        } else if let Some(t) = &self.external_purchase_token {
            let sandbox = text(&t.external_purchase_id).is_some_and(|id| id.starts_with("SANDBOX"));
            AppIdentity {
                bundle_id: text(&t.bundle_id),
                app_apple_id: int(&t.app_apple_id),
                environment: Some(if sandbox { "Sandbox" } else { "Production" }),
            }
        } else if let Some(a) = &self.app_data {
            AppIdentity {
                bundle_id: text(&a.bundle_id),
                app_apple_id: int(&a.app_apple_id),
                environment: text(&a.environment),
            }
        } else {
            AppIdentity::default()
        }
    }

    pub fn notification_type(&self) -> Option<&str> {
        text(&self.notification_type)
    }

    pub fn subtype(&self) -> Option<&str> {
        text(&self.subtype)
    }

    pub fn notification_uuid(&self) -> Option<&str> {
        text(&self.notification_uuid)
    }

    pub fn signed_date(&self) -> Option<i64> {
        int(&self.signed_date)
    }
}

impl Data {
    pub fn signed_transaction_info(&self) -> Option<&str> {
        text(&self.signed_transaction_info)
    }
    pub fn signed_renewal_info(&self) -> Option<&str> {
        text(&self.signed_renewal_info)
    }
    pub fn status(&self) -> Option<i64> {
        int(&self.status)
    }
    pub fn consumption_request_reason(&self) -> Option<&str> {
        text(&self.consumption_request_reason)
    }
}

impl AppData {
    pub fn signed_app_transaction_info(&self) -> Option<&str> {
        text(&self.signed_app_transaction_info)
    }
}

impl TransactionInfo {
    pub fn bundle_id(&self) -> Option<&str> {
        text(&self.bundle_id)
    }
    pub fn environment(&self) -> Option<&str> {
        text(&self.environment)
    }
    pub fn original_transaction_id(&self) -> Option<&str> {
        text(&self.original_transaction_id)
    }
    pub fn transaction_id(&self) -> Option<&str> {
        text(&self.transaction_id)
    }
    pub fn product_id(&self) -> Option<&str> {
        text(&self.product_id)
    }
    pub fn app_account_token(&self) -> Option<&str> {
        text(&self.app_account_token)
    }
    pub fn currency(&self) -> Option<&str> {
        text(&self.currency)
    }
    pub fn purchase_date(&self) -> Option<i64> {
        int(&self.purchase_date)
    }
    pub fn expires_date(&self) -> Option<i64> {
        int(&self.expires_date)
    }
    pub fn revocation_reason(&self) -> Option<i64> {
        int(&self.revocation_reason)
    }
    pub fn price(&self) -> Option<i64> {
        int(&self.price)
    }
    /// A free trial: `offerDiscountType` FREE_TRIAL; in payloads from
    /// before that field, an introductory offer (`offerType` 1) at price 0.
    /// `None` when the transaction says nothing about its price or offer.
    pub fn is_free_trial(&self) -> Option<bool> {
        match text(&self.offer_discount_type) {
            Some(kind) => Some(kind == "FREE_TRIAL"),
            None => match (int(&self.offer_type), self.price()) {
                (Some(1), Some(price)) => Some(price == 0),
                (Some(_), _) => Some(false),
                (None, price) => price.map(|_| false),
            },
        }
    }
}

impl RenewalInfo {
    pub fn grace_period_expires_date(&self) -> Option<i64> {
        int(&self.grace_period_expires_date)
    }
    pub fn environment(&self) -> Option<&str> {
        text(&self.environment)
    }
    pub fn original_transaction_id(&self) -> Option<&str> {
        text(&self.original_transaction_id)
    }
    pub fn product_id(&self) -> Option<&str> {
        text(&self.product_id)
    }
    pub fn app_account_token(&self) -> Option<&str> {
        text(&self.app_account_token)
    }
    pub fn auto_renew_status(&self) -> Option<i64> {
        int(&self.auto_renew_status)
    }
    pub fn expiration_intent(&self) -> Option<i64> {
        int(&self.expiration_intent)
    }
    pub fn renewal_date(&self) -> Option<i64> {
        int(&self.renewal_date)
    }
}

impl AppTransaction {
    pub fn bundle_id(&self) -> Option<&str> {
        text(&self.bundle_id)
    }
    pub fn app_apple_id(&self) -> Option<i64> {
        int(&self.app_apple_id)
    }
    pub fn receipt_type(&self) -> Option<&str> {
        text(&self.receipt_type)
    }
}

/// Structures a verified payload into `T`, or says which field does not
/// match Apple's schema.
pub fn structure<'a, T: Deserialize<'a>>(
    payload: &'a serde_json::Map<String, Value>,
) -> Result<T, String> {
    T::deserialize(payload).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn fields_coerce_like_cattrs() {
        let p: NotificationPayload = structure(&obj(json!({
            "notificationType": "SOMETHING_NEW",
            "data": {"bundleId": "com.example", "appAppleId": "1234", "status": 1.0},
            "signedDate": "1700000000000",
            "unknownField": {"x": 1}
        })))
        .unwrap();
        assert_eq!(p.notification_type(), Some("SOMETHING_NEW"));
        let id = p.identity();
        assert_eq!(id.bundle_id, Some("com.example"));
        assert_eq!(id.app_apple_id, Some(1234));
        assert_eq!(p.data.as_ref().unwrap().status(), Some(1));
        assert_eq!(p.signed_date(), Some(1_700_000_000_000));
    }

    #[test]
    fn a_free_trial_is_told_by_its_offer() {
        let tx = |v: Value| {
            structure::<TransactionInfo>(&obj(v))
                .unwrap()
                .is_free_trial()
        };
        assert_eq!(
            tx(json!({"offerType": 1, "offerDiscountType": "FREE_TRIAL", "price": 0})),
            Some(true)
        );
        assert_eq!(
            tx(json!({"offerType": 1, "offerDiscountType": "PAY_AS_YOU_GO", "price": 990})),
            Some(false)
        );
        // Before offerDiscountType: an introductory offer at price 0.
        assert_eq!(tx(json!({"offerType": 1, "price": 0})), Some(true));
        assert_eq!(tx(json!({"offerType": 2, "price": 0})), Some(false));
        assert_eq!(tx(json!({"price": 1990})), Some(false));
        assert_eq!(tx(json!({})), None);
    }

    #[test]
    fn wrong_types_are_schema_errors() {
        assert!(structure::<NotificationPayload>(&obj(json!({"data": "x"}))).is_err());
        assert!(structure::<NotificationPayload>(&obj(json!({"data": {"status": "x"}}))).is_err());
        assert!(structure::<NotificationPayload>(&obj(json!({"subtype": ["x"]}))).is_err());
        assert!(structure::<NotificationPayload>(&obj(json!({"data": null}))).is_ok());
    }

    #[test]
    fn identity_follows_apples_order() {
        let p: NotificationPayload = structure(&obj(json!({
            "summary": {"bundleId": "s", "environment": "Sandbox", "appAppleId": 1},
            "appData": {"bundleId": "a", "environment": "Production"}
        })))
        .unwrap();
        assert_eq!(p.identity().bundle_id, Some("s"));

        let p: NotificationPayload = structure(&obj(json!({
            "externalPurchaseToken": {"bundleId": "e", "externalPurchaseId": "SANDBOX_123"}
        })))
        .unwrap();
        assert_eq!(p.identity().environment, Some("Sandbox"));
        let p: NotificationPayload = structure(&obj(json!({
            "externalPurchaseToken": {"bundleId": "e", "externalPurchaseId": "123"}
        })))
        .unwrap();
        assert_eq!(p.identity().environment, Some("Production"));

        let p: NotificationPayload =
            structure(&obj(json!({"appData": {"bundleId": "a"}}))).unwrap();
        assert_eq!(p.identity().bundle_id, Some("a"));
        let p: NotificationPayload = structure(&obj(json!({}))).unwrap();
        assert_eq!(p.identity(), AppIdentity::default());
    }

    #[test]
    fn envelope_spots_v1() {
        let e: Envelope =
            serde_json::from_str(r#"{"notification_type":"RENEWAL","unified_receipt":{}}"#)
                .unwrap();
        assert!(e.signed_payload.is_none());
        assert!(e.notification_type.is_some() && e.unified_receipt.is_some());
    }
}
