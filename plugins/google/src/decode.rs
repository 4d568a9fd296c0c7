//! Wire types: the Pub/Sub push envelope, the Play `DeveloperNotification`
//! inside its `message.data`, and the Play Developer API's responses
//! (`subscriptionsv2.get`, `products.get`, `voidedpurchases.list`).
//! Parsing only; the meaning is in `map.rs`.

use base64::Engine;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
// Pub/Sub sends `message.data` padded standard base64; some relays
// re-encode it URL-safe.
use storehook_core::encoding::{LENIENT_STANDARD, LENIENT_URL_SAFE};

/// A request body that is not a Pub/Sub push (400: it is not worth a retry
/// and cannot be acknowledged as a message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body has no `message` object")]
    NoMessage,
    #[error("`message.data` is missing or not a string")]
    NoData,
}

/// Why `message.data` is not a usable Play notification. The message is
/// authenticated, so the host acknowledges it anyway (see `Outcome`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataError {
    #[error("`message.data` is not base64")]
    NotBase64,
    #[error("`message.data` does not decode to JSON")]
    NotJson,
    #[error("`message.data` is not a DeveloperNotification: {0}")]
    NotDeveloperNotification(String),
}

/// One Pub/Sub push (the wrapped format). Every field but `message.data` is
/// optional; fields of an unexpected type are ignored rather than refused,
/// since a refused push is redelivered for days.
#[derive(Debug, Clone, PartialEq)]
pub struct PushEnvelope {
    /// The whole body, for the operator's view.
    pub body: Value,
    /// `message.data`, still base64.
    pub data: String,
    /// `messageId` or its older spelling `message_id`.
    pub message_id: Option<String>,
    /// `publishTime` or `publish_time`, RFC 3339.
    pub publish_time: Option<String>,
    pub subscription: Option<String>,
}

pub fn parse_push_envelope(body: &[u8]) -> Result<PushEnvelope, EnvelopeError> {
    let body: Value =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let message = body
        .get("message")
        .and_then(Value::as_object)
        .ok_or(EnvelopeError::NoMessage)?;
    let data = message
        .get("data")
        .and_then(Value::as_str)
        .ok_or(EnvelopeError::NoData)?
        .to_string();
    let text = |keys: [&str; 2]| {
        keys.iter().find_map(|k| match message.get(*k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
    };
    let message_id = text(["messageId", "message_id"]);
    let publish_time = text(["publishTime", "publish_time"]);
    let subscription = body
        .get("subscription")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(PushEnvelope {
        data,
        message_id,
        publish_time,
        subscription,
        body,
    })
}

/// Decodes `message.data` (standard or URL-safe base64, padding optional).
pub fn decode_data(data: &str) -> Result<Vec<u8>, DataError> {
    let data = data.trim();
    LENIENT_STANDARD
        .decode(data)
        .or_else(|_| LENIENT_URL_SAFE.decode(data))
        .map_err(|_| DataError::NotBase64)
}

/// A decoded `message.data`: the typed notification and the JSON it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedData {
    pub notification: DeveloperNotification,
    pub json: Value,
}

pub fn parse_developer_notification(data: &str) -> Result<DecodedData, DataError> {
    let bytes = decode_data(data)?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|_| DataError::NotJson)?;
    let notification = DeveloperNotification::deserialize(&json)
        .map_err(|e| DataError::NotDeveloperNotification(e.to_string()))?;
    Ok(DecodedData { notification, json })
}

/// The Play RTDN payload (developer.android.com/google/play/billing/rtdn-reference).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeveloperNotification {
    pub version: Option<String>,
    pub package_name: String,
    /// Documented as a long, sent as a string in every real capture.
    #[serde(deserialize_with = "int_or_string")]
    pub event_time_millis: i64,
    pub subscription_notification: Option<SubscriptionNotification>,
    pub one_time_product_notification: Option<OneTimeProductNotification>,
    pub voided_purchase_notification: Option<VoidedPurchaseNotification>,
    pub test_notification: Option<TestNotification>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionNotification {
    pub version: Option<String>,
    #[serde(deserialize_with = "int_or_string")]
    pub notification_type: i64,
    pub purchase_token: String,
    /// The product id; optional (add-on subscriptions make it ambiguous).
    pub subscription_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OneTimeProductNotification {
    pub version: Option<String>,
    #[serde(deserialize_with = "int_or_string")]
    pub notification_type: i64,
    pub purchase_token: String,
    pub sku: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoidedPurchaseNotification {
    pub purchase_token: String,
    pub order_id: Option<String>,
    /// 1 = subscription, 2 = one-time product.
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub product_type: Option<i64>,
    /// 1 = full refund, 2 = quantity-based partial refund.
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub refund_type: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TestNotification {
    pub version: Option<String>,
}

/// The kind of notification one `DeveloperNotification` carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NotificationKind<'a> {
    Subscription(&'a SubscriptionNotification),
    OneTimeProduct(&'a OneTimeProductNotification),
    VoidedPurchase(&'a VoidedPurchaseNotification),
    Test(&'a TestNotification),
    /// A branch this adapter does not know (e.g. the newer, unverified
    /// `pendingRefundReviewNotification`): its key in the JSON.
    Other(&'a str),
}

impl DeveloperNotification {
    /// The one notification this payload carries ("exactly one of").
    pub fn kind<'a>(&'a self, json: &'a Value) -> Result<NotificationKind<'a>, DataError> {
        let mut kinds = Vec::with_capacity(1);
        if let Some(n) = &self.subscription_notification {
            kinds.push(NotificationKind::Subscription(n));
        }
        if let Some(n) = &self.one_time_product_notification {
            kinds.push(NotificationKind::OneTimeProduct(n));
        }
        if let Some(n) = &self.voided_purchase_notification {
            kinds.push(NotificationKind::VoidedPurchase(n));
        }
        if let Some(n) = &self.test_notification {
            kinds.push(NotificationKind::Test(n));
        }
        if kinds.is_empty() {
            // A branch Google added later: any other `…Notification` object.
            if let Some(key) = json.as_object().and_then(|o| {
                o.iter()
                    .find(|(k, v)| k.ends_with("Notification") && v.is_object())
                    .map(|(k, _)| k.as_str())
            }) {
                kinds.push(NotificationKind::Other(key));
            }
        }
        match kinds.as_slice() {
            [one] => Ok(*one),
            [] => Err(DataError::NotDeveloperNotification(
                "it carries no notification".into(),
            )),
            _ => Err(DataError::NotDeveloperNotification(
                "it carries more than one notification".into(),
            )),
        }
    }
}

/// `purchases.subscriptionsv2.get` response (`SubscriptionPurchaseV2`); only
/// the fields the adapter maps. Every field is optional in the API.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionPurchaseV2 {
    /// When the subscription was purchased (RFC 3339).
    pub start_time: Option<String>,
    pub subscription_state: Option<String>,
    pub linked_purchase_token: Option<String>,
    #[serde(default)]
    pub line_items: Vec<SubscriptionLineItem>,
    pub external_account_identifiers: Option<ExternalAccountIdentifiers>,
    /// Present (as `{}`) only for license testers' purchases.
    pub test_purchase: Option<Value>,
    pub acknowledgement_state: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionLineItem {
    pub product_id: Option<String>,
    pub expiry_time: Option<String>,
    pub auto_renewing_plan: Option<AutoRenewingPlan>,
    /// The phase of the offer the item is in (a free trial, an
    /// introductory or the base price); newer responses only.
    pub offer_phase: Option<OfferPhase>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoRenewingPlan {
    pub auto_renew_enabled: Option<bool>,
    /// What each renewal charges.
    pub recurring_price: Option<Money>,
}

/// Google's `Money`: whole units as a string of an int64, plus nano units
/// (10^-9) of the same sign.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Money {
    pub currency_code: Option<String>,
    pub units: Option<String>,
    pub nanos: Option<i64>,
}

impl Money {
    /// The amount in the currency's standard unit; `None` when the units
    /// are not a number.
    pub fn amount(&self) -> Option<f64> {
        let units: i64 = match self.units.as_deref() {
            None | Some("") => 0,
            Some(u) => u.parse().ok()?,
        };
        Some(units as f64 + self.nanos.unwrap_or(0) as f64 / 1e9)
    }
}

/// Which phase of an offer a line item is in; exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferPhase {
    pub free_trial: Option<Value>,
    pub introductory_price: Option<Value>,
    pub base_price: Option<Value>,
    pub proration_period: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccountIdentifiers {
    pub external_account_id: Option<String>,
    pub obfuscated_external_account_id: Option<String>,
    pub obfuscated_external_profile_id: Option<String>,
}

/// `purchases.products.get` response (`ProductPurchase`): a one-time
/// product's purchase; only the fields the adapter maps. The states are
/// integers here (not `SubscriptionPurchaseV2`'s strings), the time a
/// string of milliseconds; both spellings are read.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductPurchase {
    pub product_id: Option<String>,
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub purchase_time_millis: Option<i64>,
    /// 0 purchased, 1 canceled, 2 pending.
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub purchase_state: Option<i64>,
    /// 0 yet to be consumed, 1 consumed.
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub consumption_state: Option<i64>,
    /// 0 yet to be acknowledged, 1 acknowledged.
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub acknowledgement_state: Option<i64>,
    pub obfuscated_external_account_id: Option<String>,
}

/// One entry of `purchases.voidedpurchases.list` (`VoidedPurchase`). Google
/// documents the times as strings of milliseconds and the enums as
/// integers; its own published example has them as strings, so both are
/// read.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoidedPurchase {
    pub purchase_token: Option<String>,
    pub order_id: Option<String>,
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub purchase_time_millis: Option<i64>,
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub voided_time_millis: Option<i64>,
    /// 0 user, 1 developer, 2 Google.
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub voided_source: Option<i64>,
    /// 0 other … 8 unacknowledged purchase.
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub voided_reason: Option<i64>,
    /// Only for a quantity-based partial refund.
    #[serde(default, deserialize_with = "opt_int_or_string")]
    pub voided_quantity: Option<i64>,
}

/// One page of `voidedpurchases.list`: each entry typed and as it came
/// (the stored raw body of a recovered notification).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VoidedPage {
    pub purchases: Vec<(VoidedPurchase, Value)>,
    pub next_page_token: Option<String>,
}

/// Reads a `VoidedPurchasesListResponse`. An entry that is not a
/// `VoidedPurchase` is kept out rather than failing the page.
pub fn parse_voided_page(body: &[u8]) -> Result<(VoidedPage, usize), String> {
    let json: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if !json.is_object() {
        return Err("the answer is not a JSON object".to_owned());
    }
    let entries = match json.get("voidedPurchases") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries.clone(),
        Some(_) => return Err("`voidedPurchases` is not a list".to_owned()),
    };
    let total = entries.len();
    let purchases = entries
        .into_iter()
        .filter_map(|raw| Some((VoidedPurchase::deserialize(&raw).ok()?, raw)))
        .collect();
    let next_page_token = json
        .get("tokenPagination")
        .and_then(|p| p.get("nextPageToken"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Ok((
        VoidedPage {
            purchases,
            next_page_token,
        },
        total,
    ))
}

/// RFC 3339 (`publishTime`, `expiryTime`; 0 to 9 fractional digits) to Unix ms.
pub fn rfc3339_to_ms(value: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    String(String),
}

fn int_from(value: IntOrString) -> Result<i64, String> {
    match value {
        IntOrString::Int(i) => Ok(i),
        IntOrString::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an integer")),
    }
}

fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    int_from(IntOrString::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn opt_int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<IntOrString>::deserialize(d)?
        .map(int_from)
        .transpose()
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_fields_are_optional_but_data() {
        let e = parse_push_envelope(br#"{"message":{"data":"e30="}}"#).unwrap();
        assert_eq!(e.data, "e30=");
        assert_eq!(e.message_id, None);
        assert_eq!(e.subscription, None);
        let e = parse_push_envelope(
            br#"{"message":{"data":"","message_id":"42","publish_time":"2019-07-10T06:21:19.52Z","attributes":{"a":1}},"subscription":"x"}"#,
        )
        .unwrap();
        assert_eq!(e.message_id.as_deref(), Some("42"));
        assert_eq!(e.publish_time.as_deref(), Some("2019-07-10T06:21:19.52Z"));
        assert_eq!(e.subscription.as_deref(), Some("x"));

        assert!(matches!(
            parse_push_envelope(b"nope"),
            Err(EnvelopeError::NotJson(_))
        ));
        assert_eq!(parse_push_envelope(b"{}"), Err(EnvelopeError::NoMessage));
        assert_eq!(
            parse_push_envelope(br#"{"message":"x"}"#),
            Err(EnvelopeError::NoMessage)
        );
        assert_eq!(
            parse_push_envelope(br#"{"message":{}}"#),
            Err(EnvelopeError::NoData)
        );
        assert_eq!(
            parse_push_envelope(br#"{"message":{"data":5}}"#),
            Err(EnvelopeError::NoData)
        );
    }

    #[test]
    fn data_decodes_leniently() {
        // {"a":1} in every spelling Pub/Sub or a relay might produce.
        for s in ["eyJhIjoxfQ==", "eyJhIjoxfQ", " eyJhIjoxfQ==\n"] {
            assert_eq!(decode_data(s).unwrap(), br#"{"a":1}"#, "{s}");
        }
        // Bytes 0xfb 0xff encode to "+/8" / "-_8".
        assert_eq!(decode_data("+/8=").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_data("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_data("***"), Err(DataError::NotBase64));
    }

    #[test]
    fn event_time_is_a_string_or_a_number() {
        for v in [r#""1562739035129""#, "1562739035129"] {
            let json: Value = serde_json::from_str(&format!(
                r#"{{"packageName":"p","eventTimeMillis":{v},"testNotification":{{}}}}"#
            ))
            .unwrap();
            let n = DeveloperNotification::deserialize(&json).unwrap();
            assert_eq!(n.event_time_millis, 1_562_739_035_129);
            assert!(matches!(n.kind(&json), Ok(NotificationKind::Test(_))));
        }
        let json: Value =
            serde_json::from_str(r#"{"packageName":"p","eventTimeMillis":"soon"}"#).unwrap();
        assert!(DeveloperNotification::deserialize(&json).is_err());
    }

    #[test]
    fn exactly_one_notification() {
        let kind = |text: &str| {
            let json: Value = serde_json::from_str(text).unwrap();
            let n = DeveloperNotification::deserialize(&json).unwrap();
            n.kind(&json).map(|k| format!("{k:?}"))
        };
        assert!(kind(r#"{"packageName":"p","eventTimeMillis":1}"#).is_err());
        assert!(kind(
            r#"{"packageName":"p","eventTimeMillis":1,"testNotification":{},
                "voidedPurchaseNotification":{"purchaseToken":"t"}}"#
        )
        .is_err());
        assert_eq!(
            kind(r#"{"packageName":"p","eventTimeMillis":1,"pendingRefundReviewNotification":{"pendingRefundToken":"x"}}"#)
                .unwrap(),
            r#"Other("pendingRefundReviewNotification")"#
        );
    }

    #[test]
    fn rfc3339_accepts_0_to_9_fractional_digits() {
        assert_eq!(
            rfc3339_to_ms("2019-07-10T06:21:19Z"),
            Some(1_562_739_679_000)
        );
        assert_eq!(
            rfc3339_to_ms("2019-07-10T06:21:19.5Z"),
            Some(1_562_739_679_500)
        );
        assert_eq!(
            rfc3339_to_ms("2019-07-10T06:21:19.52Z"),
            Some(1_562_739_679_520)
        );
        assert_eq!(
            rfc3339_to_ms("2019-07-10T06:21:19.838Z"),
            Some(1_562_739_679_838)
        );
        assert_eq!(
            rfc3339_to_ms("2019-07-10T06:21:19.123456789Z"),
            Some(1_562_739_679_123)
        );
        assert_eq!(
            rfc3339_to_ms("2019-07-10T08:21:19+02:00"),
            Some(1_562_739_679_000)
        );
        assert_eq!(rfc3339_to_ms("yesterday"), None);
    }

    #[test]
    fn voided_pages_read_strings_or_numbers() {
        let (page, total) = parse_voided_page(
            br#"{"tokenPagination":{"nextPageToken":"n"},"voidedPurchases":[
                {"purchaseToken":"t","orderId":"o","purchaseTimeMillis":"1","voidedTimeMillis":2,
                 "voidedSource":"2","voidedReason":5,"kind":"androidpublisher#voidedPurchase"},
                {"purchaseToken":"t","voidedTimeMillis":"later"}]}"#,
        )
        .unwrap();
        assert_eq!(total, 2);
        assert_eq!(page.next_page_token.as_deref(), Some("n"));
        assert_eq!(page.purchases.len(), 1, "the unreadable entry is left out");
        let (v, raw) = &page.purchases[0];
        assert_eq!(
            (
                v.purchase_time_millis,
                v.voided_time_millis,
                v.voided_source,
                v.voided_reason
            ),
            (Some(1), Some(2), Some(2), Some(5))
        );
        assert_eq!(raw["kind"], "androidpublisher#voidedPurchase");
        let (empty, total) = parse_voided_page(b"{}").unwrap();
        assert_eq!((empty, total), (VoidedPage::default(), 0));
        assert!(parse_voided_page(b"[]").is_err());
        assert!(parse_voided_page(br#"{"voidedPurchases":{}}"#).is_err());
    }
}
