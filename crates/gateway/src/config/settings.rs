//! What a setting is: one [`Setting`] per flag/env variable/file key, declared once in
//! `config/args.rs` with the [`settings!`] table. Everything else comes from it: the
//! [`ServeArgs`](super::ServeArgs) struct and its clap arguments (flag, env variable, value
//! name, `--help` text), the file keys, the defaults and ranges `build` applies, the
//! redacted `Debug` and the README's settings table (`markdown_table`).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::builder::ValueParser;
use clap::{Arg, ArgAction, ArgMatches};

/// One setting, as declared.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setting {
    /// The `ServeArgs` field, the clap id and (with [`Setting::in_file`]) the file key.
    pub key: &'static str,
    /// The long flag, `--admin-listen`.
    pub flag: &'static str,
    /// The environment variable, `SWITCHBOARD_ADMIN_LISTEN`.
    pub env: &'static str,
    /// The placeholder of the value in `--help`.
    pub value_name: &'static str,
    /// The kind of value, its range and default.
    pub kind: Kind,
    /// Whether the value is secret: hidden in `--help` (env values) and in `Debug`.
    pub secret: bool,
    /// Whether the TOML file has the key (`config` and `rpc_route` have not).
    pub in_file: bool,
    /// Splits one flag/env value into several items, and lets the flag repeat.
    pub repeat: Option<char>,
    /// What it does, in one paragraph (backticks for code; README and `--help`).
    pub doc: &'static str,
    /// A README link to more (`[text](#anchor)`), README only.
    #[cfg_attr(not(test), allow(dead_code))]
    pub see: Option<&'static str>,
}

/// The kind of a setting's value, with its default.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// A whole number in `min..=max`.
    Int { min: u64, max: u64, default: u64 },
    /// `true` or `false` (also 1/0, yes/no, on/off); the bare flag means `true`.
    Bool { default: bool },
    /// Text checked by the setting's parser; the default is parsed like a flag's value.
    Text { default: TextDefault },
    /// Items: comma-separated text, a TOML array, or a repeated flag ([`Setting::repeat`]).
    List { default: &'static str },
    /// Read by code of its own (`config`, `history`, `rpc_route`); the default, described.
    Special { default: &'static str },
}

/// The default of a [`Kind::Text`] setting.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TextDefault {
    /// A value, as a flag would carry it.
    Value(&'static str),
    /// No value; what that means.
    Unset(&'static str),
}

// Constructors that keep the table short.
pub(super) const fn int(min: u64, max: u64, default: u64) -> Kind {
    Kind::Int { min, max, default }
}
pub(super) const fn boolean(default: bool) -> Kind {
    Kind::Bool { default }
}
pub(super) const fn text(default: &'static str) -> Kind {
    Kind::Text {
        default: TextDefault::Value(default),
    }
}
pub(super) const fn unset(meaning: &'static str) -> Kind {
    Kind::Text {
        default: TextDefault::Unset(meaning),
    }
}
pub(super) const fn list(default: &'static str) -> Kind {
    Kind::List { default }
}
pub(super) const fn special(default: &'static str) -> Kind {
    Kind::Special { default }
}

impl Setting {
    /// The fields a row of the table does not have to spell out.
    pub(super) const BASE: Setting = Setting {
        key: "",
        flag: "",
        env: "",
        value_name: "",
        kind: Kind::Special { default: "" },
        secret: false,
        in_file: true,
        repeat: None,
        doc: "",
        see: None,
    };

    /// The default as a flag would carry it, `None` without one.
    pub(crate) fn default_value(&self) -> Option<Cow<'static, str>> {
        match self.kind {
            Kind::Int { default, .. } => Some(default.to_string().into()),
            Kind::Bool { default } => Some(if default { "true" } else { "false" }.into()),
            Kind::Text {
                default: TextDefault::Value(v),
            } => Some(v.into()),
            _ => None,
        }
    }

    /// The default as the docs give it: the value, or what no value means.
    fn described_default(&self) -> Cow<'static, str> {
        match self.kind {
            Kind::Text {
                default: TextDefault::Unset(meaning),
            }
            | Kind::List { default: meaning }
            | Kind::Special { default: meaning } => meaning.into(),
            _ => self.default_value().unwrap_or_default(),
        }
    }

    /// The doc as one line (the table's rows wrap it).
    pub(crate) fn doc(&self) -> String {
        self.doc.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The range, if the setting has one: `0..=3600`.
    fn range(&self) -> Option<String> {
        match self.kind {
            Kind::Int { min, max, .. } => Some(format!("{min}..={max}")),
            _ => None,
        }
    }

    /// The `--help` text: the doc, the range and the default.
    pub(crate) fn help(&self) -> String {
        let mut help = self.doc().replace('`', "");
        if let Some(range) = self.range() {
            let _ = write!(help, " Allowed: {range}.");
        }
        let default = self.described_default().replace('`', "");
        let _ = write!(help, " Default: {default}.");
        help
    }

    /// The clap argument (without the value parser, which comes from the field's type).
    pub(super) fn arg(&self) -> Arg {
        let long = self.flag.strip_prefix("--").unwrap_or(self.flag);
        let mut arg = Arg::new(self.key)
            .long(long)
            .env(self.env)
            .value_name(self.value_name)
            .help(self.help())
            .hide_env_values(self.secret);
        if let Kind::Bool { .. } = self.kind {
            arg = arg
                .num_args(0..=1)
                .default_missing_value("true")
                .require_equals(true);
        }
        match self.repeat {
            Some(delimiter) => arg.value_delimiter(delimiter).action(ArgAction::Append),
            None => arg.action(ArgAction::Set),
        }
    }

    /// The README row: flag, env, file key, default, meaning (with range and link).
    #[cfg(test)]
    fn markdown_row(&self) -> String {
        let file_key = if self.in_file {
            format!("`{}`", self.key)
        } else {
            "—".to_owned()
        };
        let default = match self.kind {
            Kind::Text {
                default: TextDefault::Value(v),
            } => format!("`{v}`"),
            _ => self.described_default().into_owned(),
        };
        let mut meaning = self.doc();
        if let Some(range) = self.range() {
            let _ = write!(meaning, " Allowed: `{range}`.");
        }
        if let Some(see) = self.see {
            let _ = write!(meaning, " See {see}.");
        }
        format!(
            "| `{}` | `{}` | {file_key} | {default} | {} |",
            self.flag,
            self.env,
            meaning.replace('|', "\\|")
        )
    }
}

/// The README's settings table, generated from the declarations (a test keeps the README's
/// copy equal to it).
#[cfg(test)]
pub(crate) fn markdown_table(settings: &[Setting]) -> String {
    let mut out =
        String::from("| flag | env | file key | default | meaning |\n|---|---|---|---|---|\n");
    for setting in settings {
        out.push_str(&setting.markdown_row());
        out.push('\n');
    }
    out
}

/// The type of a `ServeArgs` field: how clap parses it, how it is read from the matches
/// and its raw items.
pub(super) trait Field: Sized {
    fn value_parser() -> ValueParser;
    fn from_matches(matches: &ArgMatches, id: &str) -> Self;
    fn items(&self) -> Option<Vec<String>>;
}

impl Field for Option<String> {
    fn value_parser() -> ValueParser {
        ValueParser::string()
    }
    fn from_matches(matches: &ArgMatches, id: &str) -> Self {
        matches.get_one::<String>(id).cloned()
    }
    fn items(&self) -> Option<Vec<String>> {
        self.clone().map(|v| vec![v])
    }
}

impl Field for Option<Vec<String>> {
    fn value_parser() -> ValueParser {
        ValueParser::string()
    }
    fn from_matches(matches: &ArgMatches, id: &str) -> Self {
        matches
            .get_many::<String>(id)
            .map(|items| items.cloned().collect())
    }
    fn items(&self) -> Option<Vec<String>> {
        self.clone()
    }
}

impl Field for Option<PathBuf> {
    fn value_parser() -> ValueParser {
        ValueParser::path_buf()
    }
    fn from_matches(matches: &ArgMatches, id: &str) -> Self {
        matches.get_one::<PathBuf>(id).cloned()
    }
    fn items(&self) -> Option<Vec<String>> {
        self.as_ref().map(|p| vec![p.display().to_string()])
    }
}

/// The settings table: each row declares one setting,
///
/// ```text
/// /// Doc (one paragraph).
/// key: FieldType, "--flag", ENV_VAR, VALUE_NAME = kind(…)[, extra: value]*;
/// ```
///
/// and the macro makes `ServeArgs` (one `Option<FieldType>` field per row, clap's `Args`
/// and `FromArgMatches`, a `Debug` that redacts secrets), [`SETTINGS`](super::SETTINGS)
/// and `cli_value`.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $key:ident: $ty:ty, $flag:literal, $env:ident, $value_name:ident = $kind:expr
            $(, $extra:ident: $extra_value:expr)* ;
    )*) => {
        /// How to run a gateway node. Every value is optional and raw: [`Config::load`]
        /// applies the file and the defaults and checks everything.
        ///
        /// [`Config::load`]: super::Config::load
        #[derive(Clone, Default)]
        pub struct ServeArgs {
            $(
                $(#[doc = $doc])*
                pub $key: Option<$ty>,
            )*
        }

        /// Every setting, in `--help` and README order.
        pub(crate) const SETTINGS: &[Setting] = &[$(
            Setting {
                key: stringify!($key),
                flag: $flag,
                env: stringify!($env),
                value_name: stringify!($value_name),
                kind: $kind,
                doc: concat!($($doc, "\n"),*),
                $($extra: $extra_value,)*
                ..Setting::BASE
            },
        )*];

        /// The raw flag/env items of setting `key`, if given.
        pub(super) fn cli_value(args: &ServeArgs, key: &str) -> Option<Vec<String>> {
            $(
                if key == stringify!($key) {
                    return Field::items(&args.$key);
                }
            )*
            None
        }

        impl clap::Args for ServeArgs {
            fn augment_args(cmd: clap::Command) -> clap::Command {
                let mut settings = SETTINGS.iter();
                let mut cmd = cmd;
                $(
                    if let Some(setting) = settings.next() {
                        cmd = cmd.arg(
                            setting.arg().value_parser(<Option<$ty> as Field>::value_parser()),
                        );
                    }
                )*
                cmd
            }

            fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
                Self::augment_args(cmd)
            }
        }

        impl clap::FromArgMatches for ServeArgs {
            fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
                Ok(ServeArgs {
                    $($key: Field::from_matches(matches, stringify!($key)),)*
                })
            }

            fn update_from_arg_matches(
                &mut self,
                matches: &clap::ArgMatches,
            ) -> Result<(), clap::Error> {
                $(
                    let value: Option<$ty> = Field::from_matches(matches, stringify!($key));
                    if value.is_some() {
                        self.$key = value;
                    }
                )*
                Ok(())
            }
        }

        impl std::fmt::Debug for ServeArgs {
            /// Like a derived `Debug`, but secrets show as `<redacted>`.
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut s = f.debug_struct("ServeArgs");
                for setting in SETTINGS {
                    let value = cli_value(self, setting.key);
                    match setting.secret {
                        true => s.field(setting.key, &value.map(|_| "<redacted>")),
                        false => s.field(setting.key, &value),
                    };
                }
                s.finish()
            }
        }
    };
}

pub(super) use settings;
