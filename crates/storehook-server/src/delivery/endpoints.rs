//! `[[webhooks]]`, `[[forward]]` and `[delivery]` validated into endpoints,
//! and the routing the database applies when it writes events.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::header::HeaderValue;
use storehook_core::{Environment, EventType, Secret};
use storehook_db::{EventRoute, ForwardRoute, OutboxConfig};

use crate::config::{Config, ConfigError};
use crate::registry::Registry;

use super::signing::decode_secret;
use super::ssrf::check_literal_host;

/// One destination, webhook or forward, as validated at start-up.
pub struct Endpoint {
    pub name: String,
    pub url: reqwest::Url,
    pub kind: EndpointKind,
    /// Standard Webhooks keys (decoded), newest first.
    pub(super) secrets: Vec<Vec<u8>>,
    /// Validated at start-up, marked sensitive.
    pub(super) authorization: Option<HeaderValue>,
    pub timeout: Duration,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    Webhook,
    Forward,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Webhook => "webhook",
            EndpointKind::Forward => "forward",
        }
    }
}

impl std::fmt::Debug for Endpoint {
    // Never print secrets or the authorization header.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &redacted_url(&self.url))
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The URL without credentials or query (which may carry tokens), for display.
pub fn redacted_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    u.set_fragment(None);
    u.to_string()
}

fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Validates `[[webhooks]]`, `[[forward]]` and `[delivery]`, and builds the
/// endpoints plus the routing the database applies when it writes events.
pub fn build_endpoints(
    config: &Config,
    registry: &Registry,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<(Vec<Endpoint>, OutboxConfig), ConfigError> {
    let mut problems = Vec::new();
    let mut endpoints = Vec::new();
    let mut outbox = OutboxConfig::default();
    let d = &config.delivery;
    if d.retry_schedule_seconds
        .iter()
        .any(|s| !s.is_finite() || *s < 0.0)
    {
        problems.push(
            "delivery.retry_schedule_seconds: delays must be zero or more seconds".to_owned(),
        );
    }
    if d.concurrency == 0 {
        problems.push("delivery.concurrency: must be at least 1".to_owned());
    }
    let default_attempts = d.retry_schedule_seconds.len() as u32 + 1;
    let mut names = HashSet::new();
    let known_store = |s: &str| registry.get(s).is_some();
    let check_url = |label: &str, url: &str, problems: &mut Vec<String>| -> Option<reqwest::Url> {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if let Err(e) = check_literal_host(&u, d.allow_loopback) {
                    problems.push(format!("{label}.url: {e}"));
                }
                Some(u)
            }
            _ => {
                // Shown without user, password or query: they may be secrets.
                problems.push(format!(
                    "{label}.url: `{}` is not an http(s) URL",
                    crate::config::display_url(url)
                ));
                None
            }
        }
    };
    for (i, w) in config.webhooks.iter().enumerate() {
        let label = format!("webhooks[{i}] ({})", w.name);
        if w.name.is_empty()
            || !w
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push(format!("{label}.name: use letters, digits, - and _"));
        }
        if !names.insert(w.name.clone()) {
            problems.push(format!("{label}.name: `{}` is used twice", w.name));
        }
        let url = check_url(&label, &w.url, &mut problems);
        let secret = env(&format!("STOREHOOK_WEBHOOK_{}_SECRET", env_name(&w.name)))
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .or_else(|| w.secret.clone());
        let mut secrets = Vec::new();
        match secret {
            None => problems.push(format!(
                "{label}.secret: required (or env STOREHOOK_WEBHOOK_{}_SECRET)",
                env_name(&w.name)
            )),
            Some(s) => match decode_secret(s.expose()) {
                Ok(k) => secrets.push(k),
                Err(e) => problems.push(format!("{label}.secret: {e}")),
            },
        }
        for (j, s) in w.previous_secrets.iter().enumerate() {
            match decode_secret(s.expose()) {
                Ok(k) => secrets.push(k),
                Err(e) => problems.push(format!("{label}.previous_secrets[{j}]: {e}")),
            }
        }
        for s in &w.stores {
            if !known_store(s) {
                problems.push(format!("{label}.stores: no store `{s}` is registered"));
            }
        }
        let mut environments = Vec::new();
        for e in &w.environments {
            match Environment::parse(&e.to_ascii_lowercase()) {
                Some(env) => environments.push(env),
                None => problems.push(format!(
                    "{label}.environments: `{e}` is not production or sandbox"
                )),
            }
        }
        let mut event_types = Vec::new();
        for t in &w.event_types {
            match EventType::parse(&t.to_ascii_uppercase()) {
                Some(t) => event_types.push(t),
                None => problems.push(format!("{label}.event_types: `{t}` is not an event type")),
            }
        }
        let authorization = match &w.authorization {
            None => None,
            Some(a) => match HeaderValue::from_str(a.expose()) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    Some(v)
                }
                Err(_) => {
                    // Never print the value: it is a credential.
                    problems.push(format!(
                        "{label}.authorization: is not a valid HTTP header value (visible ASCII only, no line breaks)"
                    ));
                    None
                }
            },
        };
        if w.max_attempts == Some(0) {
            problems.push(format!("{label}.max_attempts: must be at least 1"));
        }
        if let Some(url) = url {
            endpoints.push(Endpoint {
                name: w.name.clone(),
                url,
                kind: EndpointKind::Webhook,
                secrets,
                authorization,
                timeout: Duration::from_secs(w.timeout_seconds.max(1)),
                max_attempts: w.max_attempts.unwrap_or(default_attempts),
            });
        }
        outbox.routes.push(EventRoute {
            endpoint: w.name.clone(),
            stores: w.stores.clone(),
            environments,
            event_types,
            apps: w.apps.clone(),
        });
    }
    for (i, f) in config.forward.iter().enumerate() {
        let name = f
            .name
            .clone()
            .unwrap_or_else(|| format!("forward-{}", i + 1));
        let label = format!("forward[{i}] ({name})");
        if !names.insert(name.clone()) {
            problems.push(format!("{label}.name: `{name}` is used twice"));
        }
        for s in &f.stores {
            if !known_store(s) {
                problems.push(format!("{label}.stores: no store `{s}` is registered"));
            }
        }
        if let Some(url) = check_url(&label, &f.url, &mut problems) {
            endpoints.push(Endpoint {
                name: name.clone(),
                url,
                kind: EndpointKind::Forward,
                secrets: Vec::new(),
                authorization: None,
                timeout: Duration::from_secs(f.timeout_seconds.max(1)),
                max_attempts: f.max_attempts.unwrap_or(default_attempts).max(1),
            });
        }
        outbox.forwards.push(ForwardRoute {
            name,
            stores: f.stores.clone(),
        });
    }
    for entry in registry.iter() {
        outbox.store_labels.insert(
            entry.registration.id.to_owned(),
            entry.registration.store_label.to_owned(),
        );
    }
    if problems.is_empty() {
        Ok((endpoints, outbox))
    } else {
        Err(ConfigError::Invalid(problems.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_for_display() {
        let u = reqwest::Url::parse("https://user:pw@example.com/hook?token=abc").unwrap();
        let shown = redacted_url(&u);
        assert!(
            !shown.contains("pw") && !shown.contains("abc") && !shown.contains("user"),
            "{shown}"
        );
    }
}
