//! The command line: `tandem serve [--config FILE]`, `tandem check-config FILE` and
//! `tandem token --identity ID [...]`, with the global `--log-format human|json`.
//!
//! Bad arguments and bad configuration both exit with 64 (`EX_USAGE` from BSD's sysexits.h),
//! after a message on stderr that names the offending argument or key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, AppConfig, ConfigError};
use crate::logging::LogFormat;

/// The exit status for bad arguments or configuration (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// `tandem`'s arguments.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, about, propagate_version = true)]
pub struct Cli {
    /// Log as readable lines or JSON objects (overrides `[log] format`).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything: SIP edge, HTTP API and WebSocket gateway, router and media.
    Serve(ServeArgs),
    /// Validate a configuration file and print it resolved, with secrets redacted.
    CheckConfig(CheckConfigArgs),
    /// Print an access token signed with the first configured key: the token alone, one line.
    Token(TokenArgs),
}

/// Arguments of `tandem token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The client identity the token grants (e.g. alice).
    #[arg(long, value_name = "ID")]
    pub identity: String,
    /// Grant incoming calls (the client may `register`).
    #[arg(long)]
    pub incoming: bool,
    /// Grant outgoing calls through this application (e.g. AP followed by 32 hex digits).
    #[arg(long, value_name = "APP_SID")]
    pub outgoing_app: Option<String>,
    /// Lifetime in seconds; at most 86400 (24 h).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub ttl: u64,
    /// Configuration file (else TANDEM_CONFIG, else the embedded defaults).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `tandem serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (default: $TANDEM_CONFIG, else the embedded defaults).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `tandem check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The configuration file to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

impl Cli {
    /// Parses the process's arguments. On `--help` and `--version` it prints and exits 0; on bad
    /// arguments it prints clap's message and exits with [`EXIT_USAGE`].
    pub fn parse_or_exit() -> Cli {
        match Cli::try_parse() {
            Ok(cli) => cli,
            Err(error) => {
                // Printing can only fail when stdout/stderr are closed; the exit status still says
                // what happened.
                let _ = error.print();
                let status = if error.use_stderr() {
                    i32::from(EXIT_USAGE)
                } else {
                    0
                };
                std::process::exit(status)
            }
        }
    }
}

/// Loads the configuration for `serve`: `--config`, else `$TANDEM_CONFIG`, else the embedded
/// defaults, with `--log-format` applied over `[log] format`. On error it prints a message naming
/// the file and key and returns the exit status to use.
pub fn load_for_serve(cli: &Cli, args: &ServeArgs) -> Result<AppConfig, ExitCode> {
    let path = config::locate(args.config.as_deref());
    let mut config = config::load(path.as_deref())
        .map_err(|error| report(&mut std::io::stderr(), path.as_deref(), &error))?;
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    Ok(config)
}

/// `tandem check-config FILE`: prints the resolved configuration as TOML on `out` and returns
/// success, or prints the error on `err` and returns [`EXIT_USAGE`].
pub fn check_config(file: &Path, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let rendered = config::load_file(file).and_then(|config| config.to_toml());
    match rendered {
        Ok(text) => {
            let written = writeln!(
                out,
                "# {} resolved: defaults filled in, secrets redacted.\n\n{}",
                file.display(),
                text.trim_end()
            );
            match written {
                Ok(()) => ExitCode::SUCCESS,
                // A closed stdout (e.g. `| head`) is not a configuration problem.
                Err(_) => ExitCode::FAILURE,
            }
        }
        Err(error) => report(err, Some(file), &error),
    }
}

/// Prints a configuration error as `tandem: FILE: KEY: problem` and returns [`EXIT_USAGE`].
/// `tandem token`: mints a token with the first configured key (or the development key).
pub fn token(args: &TokenArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    use presence::token::{mint, AccountSid, ApplicationSid, Grants, OutgoingGrant, VoiceGrant};

    let usage = |err: &mut dyn Write, message: &str| {
        let _ = writeln!(err, "tandem: {message}");
        ExitCode::from(EXIT_USAGE)
    };
    let max = presence::token::Config::default().max_token_lifetime;
    if args.ttl == 0 || args.ttl > max.as_secs() {
        return usage(
            err,
            &format!("--ttl: must be 1 to {} seconds (24 h)", max.as_secs()),
        );
    }
    let identity = match presence::Identity::new(&args.identity) {
        Ok(identity) => identity,
        Err(e) => return usage(err, &format!("--identity: {e}")),
    };
    let outgoing =
        match args.outgoing_app.as_deref().map(ApplicationSid::parse) {
            None => None,
            Some(Some(application_sid)) => Some(OutgoingGrant {
                application_sid,
                params: Default::default(),
            }),
            Some(None) => return usage(
                err,
                "--outgoing-app: expected 1 to 64 letters and digits (like AP and 32 hex digits)",
            ),
        };
    let path = config::locate(args.config.as_deref());
    let config = match config::load(path.as_deref()) {
        Ok(config) => config,
        Err(error) => return report(err, path.as_deref(), &error),
    };
    let keys = match crate::keys::key_set(&config) {
        Ok(keys) => keys,
        Err(e) => return usage(err, &format!("{e:#}")),
    };
    let Some(account) = AccountSid::parse(&config.router.account.sid) else {
        return usage(err, "account.sid: not an account SID");
    };
    let Some(key) = keys.keys().first() else {
        return usage(err, "no signing key");
    };
    let grants = Grants {
        identity,
        voice: VoiceGrant {
            incoming: args.incoming,
            outgoing,
        },
    };
    let ttl = std::time::Duration::from_secs(args.ttl);
    match mint(key, &grants, &account, ttl, std::time::SystemTime::now()) {
        Ok(token) => match writeln!(out, "{token}") {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
        Err(e) => usage(err, &format!("auth.keys[0] ({}): {e}", key.id())),
    }
}

fn report(err: &mut dyn Write, file: Option<&Path>, error: &ConfigError) -> ExitCode {
    // ConfigError::Read already names the file.
    let _ = match (file, error) {
        (Some(file), error) if !matches!(error, ConfigError::Read { .. }) => {
            writeln!(err, "tandem: {}: {error}", file.display())
        }
        _ => writeln!(err, "tandem: {error}"),
    };
    ExitCode::from(EXIT_USAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tandem").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_takes_an_optional_config_and_a_global_log_format() {
        let cli = parse(&["serve", "--config", "t.toml", "--log-format", "json"]).unwrap();
        assert_eq!(cli.log_format, Some(LogFormat::Json));
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(args.config, Some(PathBuf::from("t.toml")));

        let cli = parse(&["--log-format", "human", "serve"]).unwrap();
        assert_eq!(cli.log_format, Some(LogFormat::Human));
        assert!(matches!(
            cli.command,
            Command::Serve(ServeArgs { config: None })
        ));
    }

    #[test]
    fn check_config_needs_a_file() {
        let cli = parse(&["check-config", "t.toml"]).unwrap();
        assert!(
            matches!(cli.command, Command::CheckConfig(args) if args.file == Path::new("t.toml"))
        );
        assert!(parse(&["check-config"]).is_err());
    }

    #[test]
    fn unknown_subcommands_and_formats_are_usage_errors() {
        for args in [&["frobnicate"][..], &["serve", "--log-format", "xml"], &[]] {
            let error = parse(args).unwrap_err();
            assert!(error.use_stderr(), "{args:?} should be a usage error");
        }
    }

    #[test]
    fn check_config_reports_errors_with_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[sip]\nlisen = []\n").unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = check_config(&path, &mut out, &mut err);
        assert_eq!(status, ExitCode::from(EXIT_USAGE));
        assert!(out.is_empty());
        let message = String::from_utf8(err).unwrap();
        assert!(message.contains("bad.toml"), "{message}");
        assert!(message.contains("unknown key \"sip.lisen\""), "{message}");
    }

    #[test]
    fn check_config_prints_the_resolved_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("good.toml");
        std::fs::write(&path, "[http]\nlisten = \"127.0.0.1:9090\"\n").unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = check_config(&path, &mut out, &mut err);
        assert_eq!(status, ExitCode::SUCCESS);
        assert!(err.is_empty());
        let printed = String::from_utf8(out).unwrap();
        assert!(printed.contains("listen = \"127.0.0.1:9090\""), "{printed}");
        assert!(printed.contains("rtp_ports = \"20000-29999\""), "{printed}");
    }
}
