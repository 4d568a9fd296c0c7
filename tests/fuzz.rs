//! The fuzz targets in CI (issue 8), without nightly or cargo-fuzz: the same
//! target functions `fuzz/fuzz_targets/` hands to libFuzzer, run here over
//!
//! - every checked-in seed (`fuzz/seeds/<target>/`, cut from the corpora
//!   in `tests/corpus/`) and every regression (`fuzz/regressions/<target>/`:
//!   inputs that once crashed a target, kept so they never do again);
//! - then, for a bounded time per target (`STOREHOOK_FUZZ_SECONDS`, default
//!   15), mutations of those seeds: bit flips, byte edits, cut and repeated
//!   ranges, splices between seeds, JSON and JWS tokens dropped in.
//!
//! This is blind mutation, not coverage-guided: it keeps CI honest about the
//! seeds and their neighbourhood, and `cargo fuzz run` (see `fuzz/README.md`)
//! goes deeper. A panic fails the test; the input is written under
//! `target/fuzz-crashes/` to be added to `fuzz/regressions/<target>/`.
//! `FUZZ_SEED=<n>` replays a run's mutations.

mod common;

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Rng;

fn inputs_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read input");
            (p, bytes)
        })
        .collect()
}

fn target(name: &str) -> harness::Target {
    harness::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .expect("known target")
}

/// Runs `f` on `input`; on a panic, keeps the input and fails with where.
fn run_one(name: &str, f: harness::Target, input: &[u8], origin: &str) {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_ok() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
    let _ = std::fs::create_dir_all(&dir);
    let digest = ring::digest::digest(&ring::digest::SHA256, input);
    let path = dir.join(format!("{name}-{}", hex::encode(&digest.as_ref()[..8])));
    let _ = std::fs::write(&path, input);
    panic!(
        "the {name} target panicked on {origin}; input kept at {} \
         (add it to fuzz/regressions/{name}/ once fixed)",
        path.display()
    );
}

/// Every seed and regression input, as checked in.
fn replay(name: &str) -> Vec<Vec<u8>> {
    let f = target(name);
    let seeds = inputs_in(&harness::repo(&format!("fuzz/seeds/{name}")));
    assert!(
        seeds.len() >= 10,
        "fuzz/seeds/{name} holds only {} inputs",
        seeds.len()
    );
    let regressions = inputs_in(&harness::repo(&format!("fuzz/regressions/{name}")));
    for (path, input) in seeds.iter().chain(&regressions) {
        run_one(name, f, input, &path.display().to_string());
    }
    seeds.into_iter().map(|(_, b)| b).collect()
}

/// Tokens that steer parsers into their less-travelled branches.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b".",
    b"=",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"18446744073709551616",
    b"\"\\u0000\"",
    b"\xff\xfe",
    b"eyJ",
    b"v1=",
    b"t=",
    b"\"data\":",
    b"\"signedPayload\":",
    b"\"x5c\":[]",
    b"\"alg\":\"none\"",
];

/// One mutation of `input` (or of a splice of it with `other`).
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(i..i, token.iter().copied());
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                out.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let copy = out[i..i + n].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, copy);
            }
            5 if !other.is_empty() => {
                // Splice: this input's head on the other's tail.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            6 if len > 1 => {
                out.truncate(rng.below(len));
            }
            _ => {
                // Flip the mode byte: the same bytes down the other path.
                if let Some(b) = out.first_mut() {
                    *b ^= 1;
                }
            }
        }
    }
    out
}

fn fuzz_for_a_while(name: &str) {
    let seeds = replay(name);
    let f = target(name);
    let secs: u64 = std::env::var("STOREHOOK_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let mut rng = Rng::from_env("FUZZ_SEED");
    let seed = rng.seed();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let input = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        let mutated = mutate(&mut rng, input, other);
        run_one(
            name,
            f,
            &mutated,
            &format!("mutation {runs} of FUZZ_SEED={seed}"),
        );
        runs += 1;
    }
    eprintln!(
        "{name}: {} seeds replayed, {runs} mutations in {secs} s (FUZZ_SEED={seed})",
        seeds.len()
    );
    assert!(runs > 0, "no mutation ran");
}

#[test]
fn apple_decode_path_survives_its_seeds_and_their_mutations() {
    fuzz_for_a_while("apple");
}

#[test]
fn google_decode_path_survives_its_seeds_and_their_mutations() {
    fuzz_for_a_while("google");
}

#[test]
fn stripe_decode_path_survives_its_seeds_and_their_mutations() {
    fuzz_for_a_while("stripe");
}
