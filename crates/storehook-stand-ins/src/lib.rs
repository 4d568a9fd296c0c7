//! Stand-ins for the stores' APIs, for tests only: real HTTP servers on
//! loopback (port 0) that replay the responses recorded in `recorded/`
//! (see its MANIFEST for where each comes from) and check authentication
//! the way the real service does, so a client that signs or sends its
//! credentials wrongly fails here as it would against the store.
//!
//! One module per store, named for it. Each stand-in records the requests
//! it served, so a test can assert what the client asked for. `host` is
//! the other side: a recording fake of the host an adapter pulls through.

use std::net::SocketAddr;
use std::path::PathBuf;

use warp::Filter;

pub mod apple;
pub mod google;
pub mod host;
pub mod stripe;

/// A recorded response file, by its path under `recorded/`.
pub fn recorded(rel: &str) -> Vec<u8> {
    let path = recorded_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A recorded JSON response, parsed.
pub fn recorded_json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&recorded(rel))
        .unwrap_or_else(|e| panic!("recorded/{rel} is not JSON: {e}"))
}

pub fn recorded_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("recorded")
}

/// Serves `routes` on a free loopback port until the runtime ends.
pub async fn serve<F>(routes: F) -> SocketAddr
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    addr
}
