//! The settings table itself: its declarations are consistent, every secret is redacted,
//! and the README's settings table is the one the declarations make.

use super::settings::{markdown_table, Kind};
use super::*;

#[test]
fn declarations_are_complete_and_defaults_in_range() {
    for s in SETTINGS {
        let doc = s.doc();
        assert!(
            doc.ends_with('.') && doc.len() > 10,
            "{}: doc {doc:?}",
            s.key
        );
        assert!(!s.value_name.is_empty(), "{}", s.key);
        if let Kind::Int { min, max, default } = s.kind {
            assert!((min..=max).contains(&default), "{}: {default}", s.key);
        }
        assert!(s.help().contains(" Default: "), "{}", s.key);
        assert_eq!(s.repeat.is_some(), matches!(s.key, "api_key" | "rpc_route"));
    }
    // The declared defaults are the router's.
    let router = switchboard_router::RedisSettings::new("redis://h/0", "n");
    let c = load(&[], None).expect("defaults are valid");
    assert_eq!(c.redis_prefix, router.prefix);
    assert_eq!(c.events_stream, router.events_stream);
    assert_eq!(c.redis_timeout, router.command_timeout);
    assert_eq!(c.probe_interval, router.probe_interval);
    assert_eq!(c.lease, router.lease);
    assert_eq!(c.redis_replica_acks, router.replica_acks);
}

#[test]
fn every_secret_is_redacted() {
    let samples = [
        ("redis_url", "redis://:pw-0123456789@h/0"),
        ("jwt_secret", SECRET),
        ("api_key", "api-key-0123456789"),
    ];
    let secret: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| s.secret)
        .map(|s| s.key)
        .collect();
    assert_eq!(
        secret,
        samples.map(|(key, _)| key),
        "every secret setting needs a sample here"
    );
    let a = args(&samples);
    let c = Config::from_parts(&a, None).expect("valid");
    for text in [format!("{a:?}"), format!("{c:?}")] {
        for (key, value) in samples {
            assert!(!text.contains(value), "{key}: {text}");
        }
    }
    let cmd = ServeArgs::augment_args(clap::Command::new("switchboard"));
    for s in SETTINGS {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == s.key)
            .expect("declared");
        assert_eq!(arg.is_hide_env_values_set(), s.secret, "{}", s.key);
    }
}

/// The README's settings table sits between these lines.
const BEGIN: &str = "<!-- settings table: made from crates/gateway/src/config/args.rs; \
                     SWITCHBOARD_BLESS=1 cargo test -p switchboard-gateway --bin switchboard \
                     readme rewrites it -->";
const END: &str = "<!-- end of the settings table -->";

#[test]
fn the_readme_settings_table_is_the_declared_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let start = readme.find(BEGIN).expect("README.md has the begin marker") + BEGIN.len();
    let end = start
        + readme[start..]
            .find(END)
            .expect("README.md has the end marker");
    let expected = format!("\n{}", markdown_table(SETTINGS));
    if readme[start..end] == expected {
        return;
    }
    if std::env::var_os("SWITCHBOARD_BLESS").is_some() {
        let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
        std::fs::write(path, updated).expect("README.md written");
        return;
    }
    panic!(
        "README.md's settings table is not the one config/args.rs declares; run \
         `SWITCHBOARD_BLESS=1 cargo test -p switchboard-gateway --bin switchboard readme` to \
         rewrite it. Declared:\n{expected}"
    );
}
