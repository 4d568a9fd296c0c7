//! What a plugin tells the host about its store beyond the adapter: the
//! dashboard card's setup steps and test hint, its rejection codes in plain
//! words, and what the host's guards need to know (the headers a forward
//! replays, the shapes of its secrets). Plain data with defaults: a plugin
//! author writes only what differs, e.g.
//!
//! ```
//! use storehook_core::StoreHelp;
//!
//! const HELP: StoreHelp = StoreHelp {
//!     console: "My Store's console",
//!     setup: &["In **Settings** › **Notifications**, paste `{url}`."],
//!     codes: &[(&["bad_key"], "the request's key does not match [stores.mystore] key")],
//!     ..StoreHelp::DEFAULT
//! };
//! assert_eq!(HELP.explain("bad_key"), Some("the request's key does not match [stores.mystore] key"));
//! assert_eq!(HELP.test, None);
//! ```
//!
//! Every text is plain text: the host escapes it. Setup steps and the test
//! hint may mark spans with a tiny syntax ([`spans`]) instead of markup.

/// A help text: plain text in which `` `…` `` marks a literal (a config key,
/// a URL, a command), `**…**` a name in the store's console (a button, a
/// menu), and `{url}` stands for this store's notification URL on this
/// server. Nothing else is markup: `<`, `&` and the rest show as written.
pub type HelpText = &'static str;

/// The dashboard card's help for one store.
#[derive(Debug, Clone, Copy)]
pub struct StoreHelp {
    /// Where the operator sets the store up ("App Store Connect"); plain text.
    pub console: &'static str,
    /// The setup steps, in order.
    pub setup: &'static [HelpText],
    /// What pressing the store's own test button does to the card.
    pub test: Option<HelpText>,
    /// Rejection codes in plain words: each entry's codes share its meaning
    /// (plain text). A code not listed shows the adapter's own message.
    pub codes: &'static [(&'static [&'static str], &'static str)],
}

impl StoreHelp {
    /// Generic help, for a plugin that brings none.
    pub const DEFAULT: StoreHelp = StoreHelp {
        console: "the store's console",
        setup: &[
            "In the store's console, set the server notification URL to `{url}`.",
            "Configure the store's table in `config.toml` as its plugin documents, then restart storehook.",
        ],
        test: None,
        codes: &[],
    };

    /// A rejection code in plain words, when the plugin gave one.
    pub fn explain(&self, code: &str) -> Option<&'static str> {
        self.codes
            .iter()
            .find(|(codes, _)| codes.contains(&code))
            .map(|(_, meaning)| *meaning)
    }
}

impl Default for StoreHelp {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What the host's dashboard masks in this store's decoded payloads, on top
/// of its own rules (key names such as `secret` or `token`, compact JWS/JWT
/// strings, bearer credentials). Hints from every registered store apply to
/// every payload.
#[derive(Debug, Clone, Copy)]
pub struct Masking {
    /// Keys whose values are shortened to their ends (normalized: lowercase,
    /// without `_` and `-`), e.g. a store's signed blobs.
    pub token_keys: &'static [&'static str],
    /// Value prefixes that mark a secret whatever its key (API keys).
    pub secret_prefixes: &'static [&'static str],
}

impl Masking {
    pub const NONE: Masking = Masking {
        token_keys: &[],
        secret_prefixes: &[],
    };
}

impl Default for Masking {
    fn default() -> Self {
        Self::NONE
    }
}

/// One piece of a [`HelpText`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span<'a> {
    Text(&'a str),
    /// Between backticks: a literal.
    Code(&'a str),
    /// Between double asterisks: a name in the store's console.
    Strong(&'a str),
}

/// Splits a help text into its spans. A mark without its closing half is
/// plain text. `{url}` is left in place for the host to fill in.
pub fn spans<'t>(text: &'t str) -> Vec<Span<'t>> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut plain_from = 0;
    let mut at = 0;
    while at < rest.len() {
        let tail = &rest[at..];
        let (mark, make): (&str, fn(&'t str) -> Span<'t>) = if tail.starts_with("**") {
            ("**", Span::Strong)
        } else if tail.starts_with('`') {
            ("`", Span::Code)
        } else {
            at += tail.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let inner_from = at + mark.len();
        match rest[inner_from..].find(mark) {
            Some(len) if len > 0 => {
                if at > plain_from {
                    out.push(Span::Text(&rest[plain_from..at]));
                }
                out.push(make(&rest[inner_from..inner_from + len]));
                rest = &rest[inner_from + len + mark.len()..];
                plain_from = 0;
                at = 0;
            }
            _ => at = inner_from,
        }
    }
    if plain_from < rest.len() {
        out.push(Span::Text(&rest[plain_from..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_become_spans_and_the_rest_stays_text() {
        assert_eq!(
            spans("In **Settings**, paste `{url}` <b>now</b>."),
            vec![
                Span::Text("In "),
                Span::Strong("Settings"),
                Span::Text(", paste "),
                Span::Code("{url}"),
                Span::Text(" <b>now</b>."),
            ]
        );
        assert_eq!(spans("`a``b`"), vec![Span::Code("a"), Span::Code("b")]);
        // Unclosed or empty marks are text.
        assert_eq!(spans("2 * 3 ** 4"), vec![Span::Text("2 * 3 ** 4")]);
        assert_eq!(spans("a `b"), vec![Span::Text("a `b")]);
        assert_eq!(spans("a `` b"), vec![Span::Text("a `` b")]);
        assert_eq!(
            spans("é `ü` ö"),
            vec![Span::Text("é "), Span::Code("ü"), Span::Text(" ö")]
        );
        assert_eq!(spans(""), vec![]);
    }

    #[test]
    fn codes_are_explained_from_the_table() {
        const HELP: StoreHelp = StoreHelp {
            codes: &[(&["a", "b"], "A or B"), (&["c"], "C")],
            ..StoreHelp::DEFAULT
        };
        assert_eq!(HELP.explain("b"), Some("A or B"));
        assert_eq!(HELP.explain("c"), Some("C"));
        assert_eq!(HELP.explain("d"), None);
        assert!(HELP.setup[0].contains("{url}"));
    }
}
