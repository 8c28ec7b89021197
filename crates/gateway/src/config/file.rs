//! The optional TOML file (`--config FILE`): top-level keys are the setting names in
//! snake_case. Scalars become the same text a flag would carry, so one parser serves flags,
//! env and file. Unknown keys and wrong types are reported, never ignored.

use std::collections::HashMap;

use switchboard_router::HistoryPolicy;
use toml::Value;

use super::routes::{self, Located};
use super::settings::Kind;
use super::{values, SETTINGS};

/// The settings found in the file, not yet validated (except `history`).
#[derive(Debug, Default)]
pub(super) struct FileSettings {
    /// Setting key → raw items (one item for scalars; lists may have several).
    pub values: HashMap<&'static str, Vec<String>>,
    /// `[[history]]` rules in file order, or the compact string form.
    pub history: Option<Vec<(String, HistoryPolicy)>>,
    /// `[[routes]]` tables (RPC forwarding) in file order, each checked alone.
    pub routes: Vec<Located>,
}

/// Parses `text`; every problem is pushed to `errors` as `<label>: …`.
pub(super) fn parse(text: &str, label: &str, errors: &mut Vec<String>) -> FileSettings {
    let mut out = FileSettings::default();
    let table = match text.parse::<toml::Table>() {
        Ok(table) => table,
        Err(e) => {
            // The message without the source excerpt: one line, and no secret echoed.
            let at = e
                .span()
                .map(|span| {
                    let before = text.get(..span.start).unwrap_or(text);
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    format!(" at line {line}, column {column}")
                })
                .unwrap_or_default();
            errors.push(format!("{label}: invalid TOML{at}: {}", e.message().trim()));
            return out;
        }
    };
    for (key, value) in &table {
        let declared = SETTINGS.iter().find(|s| s.in_file && s.key == key);
        match declared {
            _ if key == "routes" => out.routes = routes::from_toml(value, label, errors),
            Some(s) if s.key == "history" => out.history = Some(history(value, label, errors)),
            Some(s) if matches!(s.kind, Kind::List { .. }) => match list(value) {
                Some(items) => {
                    out.values.insert(s.key, items);
                }
                None => errors.push(format!(
                    "{label}: {key}: expected a string or an array of strings, found {}",
                    value.type_str()
                )),
            },
            Some(s) => match scalar(value) {
                Some(text) => {
                    out.values.insert(s.key, vec![text]);
                }
                None => errors.push(format!(
                    "{label}: {key}: expected a string, number or boolean, found {}",
                    value.type_str()
                )),
            },
            None => errors.push(format!("{label}: unknown key {key:?}{}", suggestion(key))),
        }
    }
    out
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn list(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

/// `[[history]]` tables (`pattern`, `max_messages`, `max_age_seconds`) or the compact string.
fn history(value: &Value, label: &str, errors: &mut Vec<String>) -> Vec<(String, HistoryPolicy)> {
    let tables = match value {
        Value::String(s) => {
            return values::history_compact(s).unwrap_or_else(|e| {
                errors.extend(e.into_iter().map(|e| format!("{label}: history: {e}")));
                Vec::new()
            })
        }
        Value::Array(tables) => tables,
        other => {
            errors.push(format!(
                "{label}: history: expected [[history]] tables, found {}",
                other.type_str()
            ));
            return Vec::new();
        }
    };
    let mut rules = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let at = format!("{label}: history[{i}]");
        let Some(table) = table.as_table() else {
            errors.push(format!(
                "{at}: expected a table with pattern, max_messages and max_age_seconds"
            ));
            continue;
        };
        let mut problems = Vec::new();
        for key in table.keys() {
            if !matches!(key.as_str(), "pattern" | "max_messages" | "max_age_seconds") {
                problems.push(format!(
                    "unknown key {key:?} (expected pattern, max_messages, max_age_seconds)"
                ));
            }
        }
        let pattern = table.get("pattern").and_then(Value::as_str);
        if pattern.is_none() {
            problems.push("pattern must be a string like \"room:chat*\"".into());
        }
        let count = non_negative(table.get("max_messages"), "max_messages", &mut problems);
        let age = non_negative(
            table.get("max_age_seconds"),
            "max_age_seconds",
            &mut problems,
        );
        if let (Some(pattern), Some(count), Some(age), true) =
            (pattern, count, age, problems.is_empty())
        {
            match values::history_rule(pattern, count, age) {
                Ok(rule) => rules.push(rule),
                Err(e) => problems.push(e),
            }
        }
        errors.extend(problems.into_iter().map(|p| format!("{at}: {p}")));
    }
    rules
}

fn non_negative(value: Option<&Value>, key: &str, problems: &mut Vec<String>) -> Option<u64> {
    match value.and_then(Value::as_integer).map(u64::try_from) {
        Some(Ok(n)) => Some(n),
        _ => {
            problems.push(format!("{key} must be a whole number >= 0"));
            None
        }
    }
}

/// ` (did you mean "x"?)` for near misses: dashes for underscores, a plural `s`.
fn suggestion(key: &str) -> String {
    let normalized = key.trim().to_ascii_lowercase().replace('-', "_");
    let candidates = [
        normalized.clone(),
        normalized.trim_end_matches('s').to_owned(),
        format!("{normalized}s"),
    ];
    SETTINGS
        .iter()
        .filter(|s| s.in_file)
        .map(|s| s.key)
        .chain(["routes"])
        .find(|known| candidates.iter().any(|c| c == known))
        .map(|known| format!(" (did you mean {known:?}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> (FileSettings, Vec<String>) {
        let mut errors = Vec::new();
        let settings = parse(text, "f.toml", &mut errors);
        (settings, errors)
    }

    #[test]
    fn mistakes_are_reported_exactly() {
        let text =
            "max-connections = 5\napi_keys = [\"k\"]\nlisten = [1]\napi_key = [1]\nbogus = 1\n";
        let (settings, errors) = problems(text);
        assert!(settings.values.is_empty());
        assert_eq!(
            errors,
            [
                "f.toml: api_key: expected a string or an array of strings, found array",
                "f.toml: unknown key \"api_keys\" (did you mean \"api_key\"?)",
                "f.toml: unknown key \"bogus\"",
                "f.toml: listen: expected a string, number or boolean, found array",
                "f.toml: unknown key \"max-connections\" (did you mean \"max_connections\"?)",
            ]
        );
    }

    #[test]
    fn bad_toml_is_one_line_without_the_source() {
        let (_, errors) = problems("listen = \"0.0.0.0:1\"\njwt_secret = \"hunter2\nx\"\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("f.toml: invalid TOML at line "),
            "{errors:?}"
        );
        assert!(!errors[0].contains("hunter2") && !errors[0].contains('\n'));
    }

    #[test]
    fn values_and_history_tables() {
        let text = "listen = \"127.0.0.1:0\"\nmax_connections = 5\ndemo = true\nnamespaces = [\"a\", \"b\"]\n\
                    [[history]]\npattern = \"room:*\"\nmax_messages = 3\nmax_age_seconds = 4\n";
        let (settings, errors) = problems(text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.values["max_connections"], ["5"]);
        assert_eq!(settings.values["demo"], ["true"]);
        assert_eq!(settings.values["namespaces"], ["a", "b"]);
        let history = settings.history.unwrap_or_default();
        assert_eq!(history.len(), 1);
        assert_eq!((history[0].0.as_str(), history[0].1.max_len), ("room:*", 3));
    }

    #[test]
    fn bad_history_tables() {
        let text = r#"
            [[history]]
            pattern = "room chat"
            max_messages = 1
            max_age_seconds = 1
            [[history]]
            pattern = "room:*"
            max_messages = -1
            [[history]]
            pattern = "room:*"
            max_messages = 1
            max_age_seconds = 1
            extra = 1
        "#;
        let (settings, errors) = problems(text);
        assert_eq!(settings.history.map(|h| h.len()), Some(0));
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("f.toml: history[0]: \"room chat\" is not a channel pattern"));
        assert_eq!(
            errors[1],
            "f.toml: history[1]: max_messages must be a whole number >= 0"
        );
        assert_eq!(
            errors[2],
            "f.toml: history[1]: max_age_seconds must be a whole number >= 0"
        );
        assert!(errors[3].starts_with("f.toml: history[2]: unknown key \"extra\""));
        for text in ["history = 5", "history = [1]", "history = \"room:x=1\""] {
            assert_eq!(problems(text).1.len(), 1, "{text}");
        }
    }
}
