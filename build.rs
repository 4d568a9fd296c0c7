//! Puts the git revision the binary is built from into `--version`.

use std::path::Path;
use std::process::Command;

fn main() {
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=STOREHOOK_GIT_REVISION={revision}");
    // Rebuilt when HEAD moves (a commit, a checkout), not on every build:
    // HEAD, the branch file it names, and packed refs.
    println!("cargo:rerun-if-changed=build.rs");
    let git = Path::new(".git");
    if git.is_dir() {
        let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD")) {
            if let Some(branch) = head.trim().strip_prefix("ref: ") {
                watched.push(branch.to_owned());
            }
        }
        // A path that does not exist would make Cargo rerun this every time.
        for file in watched.iter().filter(|f| git.join(f).exists()) {
            println!("cargo:rerun-if-changed=.git/{file}");
        }
    }
}
