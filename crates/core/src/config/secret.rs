//! Secret values: the integration file holds only references (`${env:NAME}`,
//! `${file:/run/secrets/name}`); the values are resolved at start and kept in
//! [`secrecy::SecretString`], which never prints.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file (trailing newlines are dropped, as secret files usually end with one).
    File(PathBuf),
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(name) => write!(f, "${{env:{name}}}"),
            Self::File(path) => write!(f, "${{file:{}}}", path.display()),
        }
    }
}

/// A secret from the integration file: its reference and, once resolved, its value.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Secret {
    reference: SecretRef,
    value: Option<SecretString>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.reference)
    }
}

/// Why a secret reference is invalid or could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// Literal text where a reference is required.
    #[error(
        "secret values must be references like ${{env:NAME}} or ${{file:/run/secrets/name}}, not literal text"
    )]
    NotAReference,
    /// The environment variable is not set.
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// The file cannot be read.
    #[error("cannot read secret file {path}: {reason}")]
    File {
        /// Path of the file.
        path: String,
        /// The I/O error kind.
        reason: String,
    },
    /// The value is empty.
    #[error("secret {0} is empty")]
    Empty(String),
}

impl TryFrom<String> for Secret {
    type Error = SecretError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let inner = text
            .strip_prefix("${")
            .and_then(|s| s.strip_suffix('}'))
            .ok_or(SecretError::NotAReference)?;
        let reference = if let Some(name) = inner.strip_prefix("env:") {
            if name.is_empty() {
                return Err(SecretError::NotAReference);
            }
            SecretRef::Env(name.to_owned())
        } else if let Some(path) = inner.strip_prefix("file:") {
            if path.is_empty() {
                return Err(SecretError::NotAReference);
            }
            SecretRef::File(PathBuf::from(path))
        } else {
            return Err(SecretError::NotAReference);
        };
        Ok(Self {
            reference,
            value: None,
        })
    }
}

/// Looks up environment variables; injectable so tests need no `set_var`.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Secret {
    /// The reference as written in the file.
    pub fn reference(&self) -> &SecretRef {
        &self.reference
    }

    /// The resolved value. Empty before resolution, which [`crate::Integration`] never exposes.
    pub fn expose(&self) -> &str {
        self.value.as_ref().map_or("", |v| v.expose_secret())
    }

    /// A secret with a known value, for tests and programmatic configuration.
    pub fn from_value(reference: SecretRef, value: &str) -> Self {
        Self {
            reference,
            value: Some(SecretString::from(value.to_owned())),
        }
    }

    /// Parses a reference (`${env:NAME}`, `${file:/path}`) and resolves it at once, for
    /// service settings that are secrets (the admin API's token).
    pub fn resolve_reference(text: &str, env: EnvLookup<'_>) -> Result<Self, SecretError> {
        let mut secret = Self::try_from(text.to_owned())?;
        secret.resolve(env)?;
        Ok(secret)
    }

    pub(crate) fn resolve(&mut self, env: EnvLookup<'_>) -> Result<(), SecretError> {
        let value = match &self.reference {
            SecretRef::Env(name) => {
                env(name).ok_or_else(|| SecretError::MissingEnv(name.clone()))?
            }
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| SecretError::File {
                    path: path.display().to_string(),
                    reason: e.kind().to_string(),
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        };
        if value.is_empty() {
            return Err(SecretError::Empty(self.reference.to_string()));
        }
        self.value = Some(SecretString::from(value));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_and_file_references() {
        let s = Secret::try_from("${env:ERP_SECRET}".to_owned()).expect("env ref");
        assert_eq!(s.reference(), &SecretRef::Env("ERP_SECRET".into()));
        let s = Secret::try_from("${file:/run/secrets/erp}".to_owned()).expect("file ref");
        assert_eq!(s.reference(), &SecretRef::File("/run/secrets/erp".into()));
    }

    #[test]
    fn refuses_literal_secrets() {
        for bad in ["hunter2", "${env:}", "${vault:x}", "${env:X", "$env:X}"] {
            assert_eq!(
                Secret::try_from(bad.to_owned()).err(),
                Some(SecretError::NotAReference),
                "{bad}"
            );
        }
    }

    #[test]
    fn resolves_from_env_and_file_and_never_prints_the_value() {
        let mut s = Secret::try_from("${env:A}".to_owned()).expect("ref");
        s.resolve(&|n| (n == "A").then(|| "s3cret".to_owned()))
            .expect("resolves");
        assert_eq!(s.expose(), "s3cret");
        assert!(!format!("{s:?}").contains("s3cret"));

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\n").expect("write");
        let mut s = Secret::try_from(format!("${{file:{}}}", path.display())).expect("ref");
        s.resolve(&|_| None).expect("resolves");
        assert_eq!(s.expose(), "from-file");
    }

    #[test]
    fn missing_env_names_the_variable() {
        let mut s = Secret::try_from("${env:NOPE}".to_owned()).expect("ref");
        assert_eq!(
            s.resolve(&|_| None),
            Err(SecretError::MissingEnv("NOPE".into()))
        );
    }
}
