//! The light sender: every request serialized to its HTTP/1.1 bytes before
//! the clock starts, then written as is over keep-alive connections and
//! its answer read with `httparse`. Sending then costs a write, a read and
//! a small parse — far less than a full HTTP client — so the server gets
//! almost all of the machine's cores (`wrk` with a request file does the
//! same; this one also checks every answer and picks duplicates from what
//! was acknowledged, as the default sender does).

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::load::{verdict_of, Verdict};
use crate::traffic::Request;

/// How the load generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sender {
    /// A full HTTP client (reqwest) per request.
    Http,
    /// Pre-serialized bytes over raw keep-alive connections.
    Raw,
}

impl std::str::FromStr for Sender {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http" => Ok(Self::Http),
            "raw" => Ok(Self::Raw),
            _ => Err(format!("`{s}`: http or raw")),
        }
    }
}

impl Sender {
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Raw => "raw",
        }
    }
}

/// One request's bytes on the wire.
pub fn serialize(request: &Request, host: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(request.body.len() + 512);
    out.extend_from_slice(
        format!(
            "POST /v1/notifications/{} HTTP/1.1\r\nhost: {host}\r\n",
            request.store.id()
        )
        .as_bytes(),
    );
    for (name, value) in &request.headers {
        if name == reqwest::header::CONTENT_LENGTH || name == reqwest::header::HOST {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", request.body.len()).as_bytes());
    out.extend_from_slice(&request.body);
    out
}

/// `http://host:port` → `host:port`.
pub fn authority(base: &str) -> Result<&str> {
    base.strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .ok_or_else(|| anyhow!("the raw sender speaks plain HTTP only, not `{base}`"))
}

/// A keep-alive connection and what it has read past the last answer.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    pub async fn open(authority: &str) -> Result<Self> {
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends one request's bytes and reads its answer: the status, the
    /// verdict in its body, and whether the connection stays open.
    pub async fn exchange(&mut self, bytes: &[u8]) -> Result<(u16, Verdict, bool)> {
        self.stream.write_all(bytes).await?;
        loop {
            if let Some(answer) = self.take_answer()? {
                return Ok(answer);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(60), self.stream.read_buf(&mut self.buf))
                    .await
                    .map_err(|_| anyhow!("no answer within 60 s"))??;
            if read == 0 {
                bail!("the server closed the connection");
            }
        }
    }

    /// One whole answer from the buffer, if it holds one.
    fn take_answer(&mut self) -> Result<Option<(u16, Verdict, bool)>> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(&self.buf)? else {
            return Ok(None);
        };
        let status = response.code.unwrap_or(0);
        let mut length = None;
        let mut keep_alive = true;
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("a chunked answer (the raw sender reads Content-Length bodies only)");
            } else if h.name.eq_ignore_ascii_case("connection") {
                keep_alive = !h.value.eq_ignore_ascii_case(b"close");
            }
        }
        let length = length.ok_or_else(|| anyhow!("an answer without Content-Length"))?;
        if self.buf.len() < head + length {
            return Ok(None);
        }
        let verdict = verdict_of(&self.buf[head..head + length]);
        self.buf.drain(..head + length);
        Ok(Some((status, verdict, keep_alive)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn authority_takes_plain_http_only() {
        assert_eq!(
            authority("http://127.0.0.1:8080").ok(),
            Some("127.0.0.1:8080")
        );
        assert!(authority("https://127.0.0.1:8080").is_err());
    }

    /// A server that answers in pieces, two answers in one write, then
    /// closes: every answer is read whole and in order.
    #[tokio::test]
    async fn answers_are_read_whole_however_they_arrive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let one = b"HTTP/1.1 200 OK\r\ncontent-length: 22\r\n\r\n{\"verdict\":\"tracked\"}\n";
            let two = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}";
            let three = b"HTTP/1.1 200 OK\r\ncontent-length: 24\r\nconnection: close\r\n\r\n{\"verdict\":\"duplicate\"}\n";
            let _ = s.read(&mut buf).await.unwrap();
            for piece in one.chunks(7) {
                s.write_all(piece).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(&[&two[..], &three[..]].concat()).await.unwrap();
        });
        let mut c = Connection::open(&addr).await.unwrap();
        let a = c.exchange(b"x").await.unwrap();
        assert_eq!(a, (200, Verdict::Tracked, true));
        let b = c.exchange(b"y").await.unwrap();
        assert_eq!(b, (401, Verdict::Other, true));
        // The third answer is already in the buffer: read without a new request.
        let third = c.take_answer().unwrap();
        assert_eq!(third, Some((200, Verdict::Duplicate, false)));
        server.await.unwrap();
    }

    #[test]
    fn a_request_carries_its_headers_and_exact_length() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("stripe-signature", "t=1,v1=ab".parse().unwrap());
        headers.insert("content-length", "999".parse().unwrap());
        let request = Request {
            store: crate::traffic::Store::Stripe,
            notification_id: "evt_1".into(),
            subscription: "sub_1".into(),
            tracked: false,
            valid: true,
            headers,
            body: bytes::Bytes::from_static(b"{\"id\":\"evt_1\"}"),
        };
        let text = String::from_utf8(serialize(&request, "127.0.0.1:1")).unwrap();
        assert!(text.starts_with("POST /v1/notifications/stripe HTTP/1.1\r\nhost: 127.0.0.1:1\r\n"));
        assert!(text.contains("stripe-signature: t=1,v1=ab\r\n"));
        assert!(!text.contains("999"), "{text}");
        assert!(text.ends_with("content-length: 14\r\n\r\n{\"id\":\"evt_1\"}"));
    }
}
