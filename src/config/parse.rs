//! The clap glue: parses the process's arguments and environment, or a map
//! standing in for the environment, and turns clap's error about a
//! setting's value into the [`Error::Config`] naming its variable.

use std::collections::HashMap;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};

use super::Cli;
use crate::error::Error;

/// Why the command line and environment give no [`Cli`].
#[derive(Debug)]
pub enum Invalid {
    /// A setting's value is wrong ([`Error::Config`], naming its variable).
    Setting(Error),
    /// clap's own answer: `--help`, `--version` or a malformed command line.
    Usage(clap::Error),
}

impl Cli {
    /// Parses the process's arguments and environment.
    pub fn from_process() -> Result<Cli, Invalid> {
        let command = Cli::command();
        // clap reports a value that is not UTF-8 without naming the
        // variable; a variable set to one is a mistake, not unset.
        for var in env_vars(&command) {
            if std::env::var_os(&var).is_some_and(|value| value.to_str().is_none()) {
                return Err(Invalid::Setting(Error::config(var, "is not valid UTF-8")));
            }
        }
        parse(command, std::env::args_os())
    }

    /// Parses `args` (without the program name) with `env` standing in for
    /// the process environment, so tests never mutate the process's: clap
    /// reads variables only from the process, so each one in `env` becomes
    /// the default of its flag, which is what a variable is to clap.
    pub fn from_map(args: &[&str], env: &HashMap<&str, &str>) -> Result<Cli, Invalid> {
        fn with_env(command: clap::Command, env: &HashMap<&str, &str>) -> clap::Command {
            command
                .mut_args(|arg| {
                    let value = arg.get_env().and_then(|var| env.get(var.to_str()?)).map(|v| v.to_string());
                    let arg = arg.env(None);
                    match value {
                        Some(value) => arg.default_value(value),
                        None => arg,
                    }
                })
                .mut_subcommands(|sub| with_env(sub, env))
        }
        parse(with_env(Cli::command(), env), std::iter::once("wordcount").chain(args.iter().copied()))
    }
}

fn parse<T: Into<std::ffi::OsString> + Clone>(
    command: clap::Command,
    args: impl IntoIterator<Item = T>,
) -> Result<Cli, Invalid> {
    let matches = command.try_get_matches_from(args).map_err(|err| match setting_error(&err) {
        Some(setting) => Invalid::Setting(setting),
        None => Invalid::Usage(err),
    })?;
    Cli::from_arg_matches(&matches).map_err(Invalid::Usage)
}

/// Every environment variable the command reads, subcommands included.
pub(super) fn env_vars(command: &clap::Command) -> Vec<String> {
    let own = command.get_arguments().filter_map(|arg| arg.get_env()?.to_str().map(str::to_owned));
    own.chain(command.get_subcommands().flat_map(env_vars)).collect()
}

/// clap's error about one setting's value, as the [`Error::Config`] naming
/// its variable; `None` for anything else (an unknown flag, a missing value).
fn setting_error(err: &clap::Error) -> Option<Error> {
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let (flag, value) = (context(ContextKind::InvalidArg)?, context(ContextKind::InvalidValue)?);
    let problem = match (err.kind(), err.get(ContextKind::ValidValue)) {
        (ErrorKind::ValueValidation, _) => std::error::Error::source(err)?.to_string(),
        (ErrorKind::InvalidValue, Some(ContextValue::Strings(valid))) if !valid.is_empty() => {
            format!("{value:?} is not one of: {}", valid.join(", "))
        }
        _ => return None,
    };
    let mut command = Cli::command();
    command.build();
    let var = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(clap::Command::get_arguments)
        .find(|arg| arg.to_string() == flag)?
        .get_env()?
        .to_str()?
        .to_owned();
    Some(Error::config(var, problem))
}
