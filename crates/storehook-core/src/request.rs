/// One HTTP request as the host received it, handed to an adapter before
/// anything has parsed it: signatures are computed over these exact bytes.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    /// Header names lower-cased; values as received (possibly not UTF-8).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The raw query string without the leading `?`, if any.
    pub query: Option<String>,
    /// The raw body, byte for byte.
    pub body: Vec<u8>,
    /// The host's clock when the request arrived, in Unix milliseconds.
    /// Adapters use it as "now" (signature tolerances, certificate validity)
    /// so that tests can pin the clock.
    pub received_at_ms: i64,
}

impl IncomingRequest {
    /// A request with a body and no headers, received at `received_at_ms`.
    pub fn new(body: impl Into<Vec<u8>>, received_at_ms: i64) -> Self {
        Self {
            headers: Vec::new(),
            query: None,
            body: body.into(),
            received_at_ms,
        }
    }

    /// Adds a header (builder style; the name is lower-cased).
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Sets the query string (builder style).
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// The first value of a header, by case-insensitive name, if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every value of a header, by case-insensitive name, that is UTF-8.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The value of a query parameter, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }
}

/// Decodes `%XX` escapes and `+` (as a space); invalid escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive() {
        let r = IncomingRequest::new("x", 0).with_header("Stripe-Signature", "t=1");
        assert_eq!(r.header("stripe-signature"), Some("t=1"));
        assert_eq!(r.header("STRIPE-SIGNATURE"), Some("t=1"));
        assert_eq!(r.header("other"), None);
    }

    #[test]
    fn query_params_are_decoded() {
        let r = IncomingRequest::new("", 0).with_query("a=1&token=ab%2Fc%3D+d&x");
        assert_eq!(r.query_param("token").as_deref(), Some("ab/c= d"));
        assert_eq!(r.query_param("x").as_deref(), Some(""));
        assert_eq!(r.query_param("missing"), None);
        let trailing = IncomingRequest::new("", 0).with_query("token=abc%");
        assert_eq!(trailing.query_param("token").as_deref(), Some("abc%"));
        let short = IncomingRequest::new("", 0).with_query("token=%4");
        assert_eq!(short.query_param("token").as_deref(), Some("%4"));
    }
}
