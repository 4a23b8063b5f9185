//! Secrets: values that may be written inline, read from a file (`KEY_file`) or from an
//! environment variable (`KEY_env`), and that are never shown once resolved.

use std::env::VarError;
use std::fmt;
use std::path::Path;

use super::{ConfigError, Problem};

/// What `check-config` and every `Debug`/`Display` print instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A resolved secret. `Debug` and `Display` print [`REDACTED`]; only [`Secret::expose`] gives the
/// value, so a secret cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (for secrets generated at run time, e.g. a first-start API key).
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret value itself. Call it only where the value is used (signing, comparing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Reads environment variables; the process environment in production, a map in tests.
pub(crate) type Environment<'a> = &'a dyn Fn(&str) -> Result<String, VarError>;

/// The three ways one secret key can be given, with the full dotted path of the key (e.g.
/// `auth.keys[0].secret`; the variants add `_file` and `_env`).
pub(crate) struct SecretSources<'a> {
    pub key: &'a str,
    pub inline: Option<&'a str>,
    pub file: Option<&'a Path>,
    pub env: Option<&'a str>,
}

impl SecretSources<'_> {
    /// The secret, `None` when none of the three keys is set.
    pub fn resolve(&self, environment: Environment<'_>) -> Result<Option<Secret>, ConfigError> {
        let key = self.key;
        let file_key = format!("{key}_file");
        let env_key = format!("{key}_env");
        let set: Vec<&str> = [
            self.inline.map(|_| key),
            self.file.map(|_| file_key.as_str()),
            self.env.map(|_| env_key.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let [first, second, ..] = set.as_slice() {
            return Err(ConfigError::Conflict {
                first: (*first).to_owned(),
                second: (*second).to_owned(),
            });
        }
        let value = if let Some(inline) = self.inline {
            validate(key, inline.to_owned())?
        } else if let Some(path) = self.file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::FileRead {
                key: file_key.clone(),
                path: path.to_owned(),
                source,
            })?;
            // Editors and `echo` end files with a newline that is not part of the secret.
            let text = text
                .strip_suffix('\n')
                .map(|rest| rest.strip_suffix('\r').unwrap_or(rest))
                .unwrap_or(&text)
                .to_owned();
            validate(&file_key, text)?
        } else if let Some(var) = self.env {
            // std::env::var may panic on such names, and none of them can be set anyway.
            if var.is_empty() || var.contains(['=', '\0']) {
                return Err(ConfigError::Invalid {
                    key: env_key,
                    problem: Problem::EnvironmentVariableName {
                        found: var.to_owned(),
                    },
                });
            }
            match environment(var) {
                Ok(value) => validate(&env_key, value)?,
                Err(VarError::NotPresent) => {
                    return Err(ConfigError::EnvironmentMissing {
                        key: env_key,
                        var: var.to_owned(),
                    })
                }
                Err(VarError::NotUnicode(_)) => {
                    return Err(ConfigError::EnvironmentNotUnicode {
                        key: env_key,
                        var: var.to_owned(),
                    })
                }
            }
        } else {
            return Ok(None);
        };
        Ok(Some(value))
    }
}

fn validate(key: &str, value: String) -> Result<Secret, ConfigError> {
    let problem = if value.is_empty() {
        Problem::Empty
    } else if value == REDACTED {
        Problem::RedactedPlaceholder
    } else {
        return Ok(Secret(value));
    };
    Err(ConfigError::Invalid {
        key: key.to_owned(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn no_environment(_: &str) -> Result<String, VarError> {
        Err(VarError::NotPresent)
    }

    fn sources<'a>(
        inline: Option<&'a str>,
        file: Option<&'a Path>,
        env: Option<&'a str>,
    ) -> SecretSources<'a> {
        SecretSources {
            key: "http.api_key",
            inline,
            file,
            env,
        }
    }

    #[test]
    fn secret_never_shows_its_value() {
        let secret = Secret::new("s3cr3t-value".to_owned());
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(format!("{secret}"), REDACTED);
        assert_eq!(secret.expose(), "s3cr3t-value");
    }

    #[test]
    fn nothing_set_is_none() {
        assert_eq!(
            sources(None, None, None).resolve(&no_environment).unwrap(),
            None
        );
    }

    #[test]
    fn inline_value_is_taken_as_written() {
        let secret = sources(Some(" spaced \n"), None, None)
            .resolve(&no_environment)
            .unwrap()
            .unwrap();
        assert_eq!(secret.expose(), " spaced \n");
    }

    #[test]
    fn file_loses_exactly_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        for (written, expected) in [
            ("key\n", "key"),
            ("key\r\n", "key"),
            ("key\n\n", "key\n"),
            ("key", "key"),
        ] {
            let path = dir.path().join("secret");
            std::fs::File::create(&path)
                .unwrap()
                .write_all(written.as_bytes())
                .unwrap();
            let secret = sources(None, Some(&path), None)
                .resolve(&no_environment)
                .unwrap()
                .unwrap();
            assert_eq!(secret.expose(), expected, "file content {written:?}");
        }
    }

    #[test]
    fn unreadable_file_names_the_file_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let error = sources(None, Some(&path), None)
            .resolve(&no_environment)
            .unwrap_err();
        let shown = error.to_string();
        assert!(shown.starts_with("http.api_key_file: "), "{shown}");
        assert!(shown.contains("absent"), "{shown}");
    }

    #[test]
    fn environment_variable_is_read() {
        let environment = |name: &str| match name {
            "TANDEM_TEST_KEY" => Ok("from-env".to_owned()),
            _ => Err(VarError::NotPresent),
        };
        let secret = sources(None, None, Some("TANDEM_TEST_KEY"))
            .resolve(&environment)
            .unwrap()
            .unwrap();
        assert_eq!(secret.expose(), "from-env");
    }

    #[test]
    fn missing_environment_variable_names_key_and_variable() {
        let error = sources(None, None, Some("TANDEM_NOT_SET"))
            .resolve(&no_environment)
            .unwrap_err();
        assert!(matches!(
            &error,
            ConfigError::EnvironmentMissing { key, var }
                if key == "http.api_key_env" && var == "TANDEM_NOT_SET"
        ));
        let shown = error.to_string();
        assert!(shown.contains("http.api_key_env"), "{shown}");
        assert!(shown.contains("TANDEM_NOT_SET"), "{shown}");
    }

    #[test]
    fn unusable_variable_names_are_refused_before_lookup() {
        for name in ["", "A=B", "A\0B"] {
            let environment = |_: &str| -> Result<String, VarError> {
                panic!("looked up an unusable variable name")
            };
            let error = sources(None, None, Some(name))
                .resolve(&environment)
                .unwrap_err();
            assert!(matches!(
                error,
                ConfigError::Invalid {
                    problem: Problem::EnvironmentVariableName { .. },
                    ..
                }
            ));
        }
    }

    #[test]
    fn two_sources_name_both_keys() {
        let path = Path::new("/nonexistent");
        let error = sources(Some("a"), Some(path), None)
            .resolve(&no_environment)
            .unwrap_err();
        assert!(matches!(
            &error,
            ConfigError::Conflict { first, second }
                if first == "http.api_key" && second == "http.api_key_file"
        ));
        let error = sources(None, Some(path), Some("X"))
            .resolve(&no_environment)
            .unwrap_err();
        assert!(matches!(
            &error,
            ConfigError::Conflict { first, second }
                if first == "http.api_key_file" && second == "http.api_key_env"
        ));
    }

    #[test]
    fn empty_and_placeholder_values_are_refused() {
        let error = sources(Some(""), None, None)
            .resolve(&no_environment)
            .unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Invalid {
                problem: Problem::Empty,
                ..
            }
        ));
        let error = sources(Some(REDACTED), None, None)
            .resolve(&no_environment)
            .unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Invalid {
                problem: Problem::RedactedPlaceholder,
                ..
            }
        ));
    }
}
