//! Secrets and text that must not leak: a [`Secret`] whose `Debug` and
//! `Display` never show the value, configuration errors with the offending
//! value taken out, and log-safe rendering of untrusted strings.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A configured secret (a token, a signing key, a password). Its `Debug` and
/// `Display` print `***`, so a derived `Debug` on a config struct, a log line
/// or an error message never carries the value; [`Secret::expose`] is the one
/// deliberate way to read it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the code that uses it (compare, sign, send).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `given` is this secret, in constant time. Both sides are
    /// hashed first, so the comparison takes as long whatever the lengths
    /// and reveals neither the secret's bytes nor its length.
    pub fn matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq;
        let digest = |v: &str| ring::digest::digest(&ring::digest::SHA256, v.as_bytes());
        bool::from(digest(&self.0).as_ref().ct_eq(digest(given).as_ref()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// A configuration error message without the values it quotes.
///
/// serde and toml put the offending value into their messages
/// (``invalid type: integer `123`, expected a string``, `invalid value:
/// string "whsec_…"`) and toml adds a snippet of the source line. The value
/// may be the secret that is wrong, so the snippet goes and the value is
/// replaced; key names, which are not secret, stay.
pub fn redact_config_error(message: &str) -> String {
    // toml's Display: "TOML parse error at line 3, column 15\n  |\n3 | key = …\n  |   ^\n<message>"
    // — keep the position line and the message, drop the quoted source.
    let mut position = None;
    let mut text = Vec::new();
    for line in message.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("TOML parse error") {
            position = Some(
                trimmed
                    .trim_start_matches("TOML parse error")
                    .trim()
                    .to_owned(),
            );
            continue;
        }
        // Snippet lines: "  |", "3 | source", "  |    ^^^".
        if let Some((gutter, _)) = trimmed.split_once('|') {
            if gutter.trim().chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
        }
        if !trimmed.is_empty() {
            text.push(trimmed.to_owned());
        }
    }
    let body = text.join("; ");
    let body = hide_values(&body);
    match position {
        Some(p) if !p.is_empty() => format!("{p}: {body}"),
        _ => body,
    }
}

/// Replaces what serde's `invalid type` / `invalid value` / `unknown variant`
/// messages quote with `(value not shown)`.
fn hide_values(message: &str) -> String {
    const QUOTING: [&str; 3] = ["invalid type: ", "invalid value: ", "unknown variant "];
    let mut out = message.to_owned();
    for marker in QUOTING {
        let mut search_from = 0;
        while let Some(found) = out[search_from..].find(marker) {
            let start = search_from + found + marker.len();
            // The quoted value runs up to ", expected"; without one, to the end.
            let end = out[start..]
                .find(", expected")
                .map(|i| start + i)
                .unwrap_or(out.len());
            out.replace_range(start..end, "(value not shown)");
            search_from = start + "(value not shown)".len();
        }
    }
    out
}

/// Renders an untrusted string for a log line: control characters (CR, LF,
/// ANSI escapes…) and backslashes escaped, so a signed id containing a
/// newline cannot forge a second log line; long strings cut.
pub struct LogSafe<'a>(pub &'a str);

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX_CHARS: usize = 200;
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX_CHARS {
                return f.write_str("…");
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_compares_the_whole_value() {
        let s = Secret::new("tok-123");
        assert!(s.matches("tok-123"));
        assert!(!s.matches("tok-12"));
        assert!(!s.matches("tok-1234"));
        assert!(!s.matches(""));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("whsec_topsecret");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Cfg {
            token: Secret,
        }
        let shown = format!("{:?}", Cfg { token: s.clone() });
        assert!(!shown.contains("topsecret"), "{shown}");
        assert_eq!(s.expose(), "whsec_topsecret");
    }

    #[test]
    fn config_errors_lose_the_value_but_keep_the_key() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Cfg {
            port: u16,
            mode: Option<Mode>,
        }
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        enum Mode {
            Fast,
        }
        for text in [
            "port = 'hunter2-secret'",
            "port = 1\nmode = 'hunter2-secret'",
            "port = 1\nhunter2 = 'hunter2-secret'",
            "port = \"hunter2-secret",
        ] {
            let raw = toml::from_str::<Cfg>(text).unwrap_err().to_string();
            let redacted = redact_config_error(&raw);
            assert!(
                !redacted.contains("hunter2-secret"),
                "{text:?}: {redacted:?} (raw {raw:?})"
            );
            assert!(redacted.contains("line"), "{text:?}: {redacted:?}");
        }
        let raw = toml::from_str::<Cfg>("port = 1\nprot = 2")
            .unwrap_err()
            .to_string();
        assert!(redact_config_error(&raw).contains("prot"), "{raw}");
    }

    #[test]
    fn log_safe_escapes_line_breaks_and_escapes() {
        let shown = LogSafe("evt_1\r\nINFO forged line\x1b[31m").to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r') && !shown.contains('\x1b'));
        assert!(shown.contains("evt_1\\u{d}\\u{a}INFO"), "{shown}");
        assert_eq!(LogSafe(&"a".repeat(500)).to_string().chars().count(), 201);
    }
}
