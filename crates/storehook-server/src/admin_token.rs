//! The admin token kept in the data folder, for installs that configure
//! none: generated at the first start (so a newcomer gets in without
//! editing the config), owner-only, printed by `storehook admin-token`,
//! replaced by `storehook admin-token --rotate` (the running server notices
//! the file change, or reloads on SIGHUP).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use storehook_core::Secret;

use crate::config::Config;

/// The file's name inside the data folder.
pub const FILE_NAME: &str = "admin-token";

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the admin token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the admin token file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the admin token file {0} is empty or shorter than 16 characters; delete it to have a new one generated")]
    TooShort(String),
    #[error("the system random number generator failed")]
    Random,
}

/// Where the data folder's token lives for `config`.
pub fn path(config: &Config) -> PathBuf {
    config.data_dir().join(FILE_NAME)
}

/// The token in `path`, generating the file when it does not exist.
/// Returns the token and whether it was generated just now.
pub fn load_or_create(path: &Path) -> Result<(Secret, bool), TokenFileError> {
    match read(path) {
        Ok(token) => Ok((token, false)),
        Err(TokenFileError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            let token = generate()?;
            match write_new(path, &token) {
                Ok(()) => Ok((token, true)),
                // Another process created it first: use theirs.
                Err(TokenFileError::Write { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    Ok((read(path)?, false))
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Reads the token (surrounding whitespace is not part of it).
pub fn read(path: &Path) -> Result<Secret, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let token = text.trim();
    if token.chars().count() < 16 {
        return Err(TokenFileError::TooShort(path.display().to_string()));
    }
    Ok(Secret::new(token))
}

/// Replaces the token with a new one, atomically (a reader sees the old
/// file or the new one, never half of it).
pub fn rotate(path: &Path) -> Result<Secret, TokenFileError> {
    let token = generate()?;
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, &token)?;
    std::fs::rename(&tmp, path).map_err(|source| TokenFileError::Write {
        path: path.display().to_string(),
        source,
    })?;
    Ok(token)
}

/// 32 random bytes, base64url: 43 characters, safe in a header and a form.
fn generate() -> Result<Secret, TokenFileError> {
    let mut raw = [0u8; 32];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| TokenFileError::Random)?;
    Ok(Secret::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
    ))
}

/// Creates `path` owner-only (0600) and writes the token; fails if it exists.
fn write_new(path: &Path, token: &Secret) -> Result<(), TokenFileError> {
    let error = |source| TokenFileError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        crate::create_private_dir(dir).map_err(error)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(error)?;
    writeln!(file, "{}", token.expose()).map_err(error)?;
    file.sync_all().map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_owner_only_and_rotated_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join(FILE_NAME);
        let (first, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(first.expose().len(), 43);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again, first);
        let rotated = rotate(&path).unwrap();
        assert_ne!(rotated, first);
        assert_eq!(read(&path).unwrap(), rotated);
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(read(&path), Err(TokenFileError::TooShort(_))));
    }
}
