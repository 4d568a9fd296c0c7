//! Puts the git revision the binary is built from into `--version`.

use std::path::{Path, PathBuf};
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
    if let Some((git, common)) = git_dirs() {
        let mut watched = vec![git.join("HEAD"), common.join("packed-refs")];
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD")) {
            if let Some(branch) = head.trim().strip_prefix("ref: ") {
                watched.push(common.join(branch));
            }
        }
        // A path that does not exist would make Cargo rerun this every time.
        for file in watched.iter().filter(|f| f.exists()) {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
}

/// The git dir (HEAD) and the common dir (refs): both `.git` in a clone; in
/// a `git worktree`, `.git` is a file naming the worktree's own git dir,
/// whose `commondir` leads to the refs.
fn git_dirs() -> Option<(PathBuf, PathBuf)> {
    let dot = Path::new(".git");
    if dot.is_dir() {
        return Some((dot.to_path_buf(), dot.to_path_buf()));
    }
    let text = std::fs::read_to_string(dot).ok()?;
    let git = PathBuf::from(text.trim().strip_prefix("gitdir: ")?);
    let common = std::fs::read_to_string(git.join("commondir"))
        .map(|c| git.join(c.trim()))
        .unwrap_or_else(|_| git.clone());
    Some((git, common))
}
