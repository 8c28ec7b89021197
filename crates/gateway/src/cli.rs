//! The command line (docs/protocol.md §1): `switchboard [serve] [FLAGS]` runs a gateway node,
//! `switchboard token --sub <id> …` prints a signed development JWT. Settings are parsed as
//! raw text here and checked by [`crate::config::Config::load`].

use clap::{Parser, Subcommand};

use crate::config::ServeArgs;
use crate::token::TokenArgs;

/// `switchboard`: the command line. Without a subcommand it serves with the top-level flags.
#[derive(Parser, Debug)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard: a horizontally scaled WebSocket gateway",
    long_about = "Switchboard: a horizontally scaled WebSocket gateway.\n\n\
        Every setting is a flag, an environment variable SWITCHBOARD_<NAME> and a key of the \
        optional TOML file given with --config; flags beat env beat file beat defaults.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; `serve` when absent.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of the implicit `serve` (no subcommand given).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a gateway node (default)
    Serve(ServeArgs),
    /// Print a signed development JWT (HMAC key of the node's configuration)
    Token(TokenArgs),
}

impl Cli {
    /// The command to run: the subcommand, or `serve` with the top-level flags.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args, CommandFactory};

    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(args).map(Cli::into_command)
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default() {
        let Ok(Command::Serve(args)) = parse(&["switchboard", "--listen", "127.0.0.1:0"]) else {
            panic!("expected serve");
        };
        assert_eq!(args.listen.as_deref(), Some("127.0.0.1:0"));
        let Ok(Command::Serve(args)) =
            parse(&["switchboard", "serve", "--node-id", "gw-1", "--demo"])
        else {
            panic!("expected serve");
        };
        assert_eq!(args.node_id.as_deref(), Some("gw-1"));
        assert_eq!(args.demo.as_deref(), Some("true"));
    }

    #[test]
    fn api_keys_repeat_and_split() {
        let Ok(Command::Serve(args)) =
            parse(&["switchboard", "--api-key", "a,b", "--api-key", "c"])
        else {
            panic!("expected serve");
        };
        assert_eq!(args.api_key, Some(vec!["a".into(), "b".into(), "c".into()]));
    }

    #[test]
    fn token_subcommand() {
        let argv = [
            "switchboard",
            "token",
            "--sub",
            "alice",
            "--channels",
            "room:*,news",
            "--channels",
            "x",
            "--rpc",
            "orders.*",
            "--ttl",
            "60",
            "--jwt-secret",
            "s",
        ];
        let Ok(Command::Token(args)) = parse(&argv) else {
            panic!("expected token");
        };
        assert_eq!(args.sub, "alice");
        assert_eq!(args.channels, ["room:*", "news", "x"]);
        assert!(args.publish.is_empty());
        assert_eq!(args.rpc, Some(vec!["orders.*".to_owned()]));
        assert_eq!(args.ttl, 60);
        assert_eq!(args.config.jwt_secret.as_deref(), Some("s"));
        assert!(
            parse(&["switchboard", "token"]).is_err(),
            "--sub is required"
        );
    }

    #[test]
    fn help_documents_every_default() {
        let help = Cli::command()
            .find_subcommand_mut("serve")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        for flag in [
            "--listen",
            "--admin-listen",
            "--redis-url",
            "--drain-seconds",
            "--history",
        ] {
            assert!(help.contains(flag), "{flag} missing from help");
        }
        let args: Vec<_> = ServeArgs::augment_args(clap::Command::new("x"))
            .get_arguments()
            .map(|a| {
                (
                    a.get_id().to_string(),
                    a.get_long_help().or(a.get_help()).map(|h| h.to_string()),
                )
            })
            .collect();
        for (id, help) in args {
            let help = help.unwrap_or_default();
            assert!(
                id == "config" || help.contains("Default:") || help.contains("Default: none"),
                "--{id} does not state its default: {help}"
            );
        }
    }
}
