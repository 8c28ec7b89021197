//! Where each raw value comes from (flags/env beat the file) and the typed getters that
//! record every bad value instead of stopping at the first.

use super::file::FileSettings;
use super::settings::Kind;
use super::values;
use super::{cli_value, declared, ServeArgs};

#[derive(Clone, Copy)]
pub(super) enum Origin {
    Cli,
    File,
}

/// Where a value came from, for messages: `--listen / SWITCHBOARD_LISTEN` or `<file>: listen`.
pub(super) fn label(key: &str, origin: Origin, file_label: &str) -> String {
    match origin {
        Origin::Cli => {
            let setting = declared(key);
            format!("{} / {}", setting.flag, setting.env)
        }
        Origin::File => format!("{file_label}: {key}"),
    }
}

pub(super) struct Loader<'a> {
    pub(super) args: &'a ServeArgs,
    pub(super) file: FileSettings,
    pub(super) file_label: String,
    pub(super) errors: Vec<String>,
    pub(super) warnings: Vec<String>,
}

impl Loader<'_> {
    /// The raw items of `key` from the highest-priority source that has it. An empty value
    /// counts as unset (`SWITCHBOARD_REDIS_URL=` in a compose file means "no Redis").
    pub(super) fn raw(&self, key: &str) -> Option<(Vec<String>, Origin)> {
        let set = |items: &Vec<String>| items.iter().any(|i| !i.trim().is_empty());
        match cli_value(self.args, key).filter(set) {
            Some(items) => Some((items, Origin::Cli)),
            None => self
                .file
                .values
                .get(key)
                .filter(|items| set(items))
                .map(|v| (v.clone(), Origin::File)),
        }
    }

    pub(super) fn label(&self, key: &str) -> String {
        let origin = self.raw(key).map_or(Origin::Cli, |(_, origin)| origin);
        label(key, origin, &self.file_label)
    }

    pub(super) fn problem(&mut self, key: &str, origin: Origin, message: impl std::fmt::Display) {
        let label = label(key, origin, &self.file_label);
        self.errors.push(format!("{label}: {message}"));
    }

    /// The parsed value of `key`, `None` when unset or bad (bad is recorded).
    pub(super) fn opt<T>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (items, origin) = self.raw(key)?;
        match parse(&items.join(",")) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(key, origin, e);
                None
            }
        }
    }

    /// The parsed value of `key`, or its declared default.
    pub(super) fn get<T>(
        &mut self,
        key: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        match self.opt(key, &parse) {
            Some(value) => value,
            None => {
                let default = declared(key).default_value();
                let default = default.unwrap_or_else(|| panic!("{key} has no default"));
                parse(&default).unwrap_or_else(|e| panic!("{key}: bad default: {e}"))
            }
        }
    }

    /// A whole number in the declared range, or the declared default.
    pub(super) fn int(&mut self, key: &'static str) -> u64 {
        let Kind::Int { min, max, .. } = declared(key).kind else {
            panic!("{key} is not declared as a whole number");
        };
        self.get(key, |s| values::int(s, min, max))
    }

    pub(super) fn list<T>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&[String]) -> Result<T, Vec<String>>,
    ) -> Option<T> {
        let (items, origin) = self.raw(key)?;
        match parse(&items) {
            Ok(v) => Some(v),
            Err(problems) => {
                for p in problems {
                    self.problem(key, origin, p);
                }
                None
            }
        }
    }

    /// A string setting, as given (secrets are not trimmed).
    pub(super) fn text(&self, key: &'static str) -> Option<String> {
        self.raw(key).map(|(items, _)| items.join(","))
    }

    pub(super) fn trimmed(&self, key: &'static str) -> Option<String> {
        self.text(key).map(|s| s.trim().to_owned())
    }
}
