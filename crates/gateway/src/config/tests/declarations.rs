//! The settings table itself: its declarations are consistent and every secret is
//! redacted.

use super::settings::Kind;
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
