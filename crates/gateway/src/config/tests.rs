//! Configuration tests: defaults, precedence, the TOML file and that every bad value is
//! reported at once. They use [`Config::from_parts`] and parse flags with clap, never the
//! process environment's own values.

use clap::{Args, FromArgMatches};
use switchboard_router::HistoryPolicy;

use super::*;

mod declarations;
mod jwt;

const SECRET: &str = "config-test-secret-0123456789abcdef";

/// `ServeArgs` from `--key=value` flags (keys in snake_case), through clap.
fn args(flags: &[(&str, &str)]) -> ServeArgs {
    let argv = std::iter::once("switchboard".to_owned()).chain(
        flags
            .iter()
            .map(|(k, v)| format!("--{}={v}", k.replace('_', "-"))),
    );
    let matches = ServeArgs::augment_args(clap::Command::new("switchboard"))
        .try_get_matches_from(argv)
        .expect("flags parse");
    ServeArgs::from_arg_matches(&matches).expect("flags map to ServeArgs")
}

fn with_secret(flags: &[(&str, &str)]) -> ServeArgs {
    let mut a = args(flags);
    a.jwt_secret.get_or_insert_with(|| SECRET.to_owned());
    a
}

fn load(flags: &[(&str, &str)], file: Option<&str>) -> Result<Config, ConfigErrors> {
    Config::from_parts(&with_secret(flags), file)
}

fn errors(flags: &[(&str, &str)], file: Option<&str>) -> Vec<String> {
    match load(flags, file) {
        Ok(_) => panic!("expected errors for {flags:?} / {file:?}"),
        Err(ConfigErrors(e)) => e,
    }
}

fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn defaults() {
    let c = load(&[], None).expect("valid");
    assert_eq!(c.listen, "0.0.0.0:8080".parse().expect("addr"));
    assert_eq!(c.admin_listen, "0.0.0.0:9090".parse().expect("addr"));
    assert_eq!(c.redis_url, None);
    assert!(values::node_id(&c.node_id).is_ok());
    assert_eq!(c.jwt_algorithm, Some(Algorithm::HS256));
    assert_eq!(c.jwt_secret.as_deref(), Some(SECRET));
    assert!(c.api_keys.is_empty() && c.allowed_origins.is_none() && c.namespaces.is_empty());
    assert_eq!(
        (c.drain, c.lease),
        (Duration::from_secs(10), Duration::from_secs(10))
    );
    assert_eq!(c.max_message_bytes, 65536);
    assert_eq!(c.heartbeat, Duration::from_millis(25_000));
    assert_eq!(c.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.idle_timeout, Duration::ZERO);
    assert_eq!(c.idle_timeout(), Duration::from_secs(50));
    assert_eq!((c.max_connections, c.max_subscriptions), (100_000, 256));
    assert_eq!(c.max_connections_per_user, 64);
    assert_eq!(
        (c.outbound_queue_frames, c.outbound_queue_bytes),
        (1024, 4 << 20)
    );
    assert_eq!((c.rate_limit_per_sec, c.rate_limit_burst), (100, 200));
    assert_eq!(
        (c.bad_frame_limit, c.bad_frame_window),
        (10, Duration::from_secs(60))
    );
    assert_eq!(
        c.history.for_channel("user:a"),
        switchboard_router::policy::USER_DEFAULT
    );
    assert!(!c.history.for_channel("room:a").keeps_history());
    assert_eq!(
        (c.log_format, c.log_level.as_str(), c.demo),
        (LogFormat::Text, "info", false)
    );
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("server API is closed")));
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = Config::from_parts(
        &args(&[("listen", "nope")]),
        Some("drain_seconds = \"abc\"\n"),
    )
    .expect_err("three problems");
    assert_eq!(e.0.len(), 3, "{e}");
    assert!(
        e.0[0].starts_with("--listen / SWITCHBOARD_LISTEN: \"nope\""),
        "{e}"
    );
    assert!(
        e.0.iter()
            .any(|l| l.contains("set --jwt-secret, --jwt-public-key or --jwt-jwks-url")),
        "{e}"
    );
    assert!(
        e.0.iter()
            .any(|l| l.starts_with("config file: drain_seconds:")),
        "{e}"
    );
    assert_eq!(e.to_string().lines().count(), 3);
}

#[test]
fn flags_beat_the_file() {
    let file =
        "listen = \"127.0.0.1:1000\"\nadmin_listen = \"127.0.0.1:2000\"\nnode_id = \"from-file\"\n";
    let c = load(&[("listen", "127.0.0.1:0")], Some(file)).expect("valid");
    assert_eq!(c.listen.port(), 0);
    assert_eq!(c.admin_listen.port(), 2000);
    assert_eq!(c.node_id, "from-file");
}

#[test]
fn empty_values_are_unset() {
    let file = "listen = \"127.0.0.1:1000\"\nredis_url = \"\"\n";
    let c = load(
        &[("listen", ""), ("redis_url", " "), ("allowed_origins", "")],
        Some(file),
    )
    .expect("valid");
    assert_eq!(
        (c.listen.port(), c.redis_url, c.allowed_origins),
        (1000, None, None)
    );
}

#[test]
fn the_dev_echo_is_off_unless_asked_for_and_warns_when_on() {
    let c = load(&[], None).expect("valid");
    assert!(!c.dev_echo);
    assert!(!c.warnings.iter().any(|w| w.contains("--dev-echo")));
    let argv = ["switchboard", "--dev-echo", "--jwt-secret", SECRET];
    let matches = ServeArgs::augment_args(clap::Command::new("switchboard"))
        .try_get_matches_from(argv)
        .expect("flags parse");
    let a = ServeArgs::from_arg_matches(&matches).expect("flags map to ServeArgs");
    let c = Config::from_parts(&a, None).expect("valid");
    assert!(c.dev_echo);
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("--dev-echo") && w.contains("without a token")));
    let c = load(&[], Some("dev_echo = true")).expect("valid");
    assert!(c.dev_echo);
}

#[test]
fn file_values_of_every_shape() {
    let file = r#"
        redis_url = "redis://localhost:6379/0"
        api_key = ["key-one-0123456789", "key-two-0123456789"]
        allowed_origins = "https://app.example.com,http://localhost:3000"
        namespaces = ["chat", "game"]
        max_message_bytes = 1024
        heartbeat_ms = 5000
        idle_timeout_ms = 7000
        rate_limit = 0
        demo = true
        log_format = "json"
        log_level = "switchboard=debug,warn"
        jwt_audience = "sb"
    "#;
    let c = load(&[], Some(file)).expect("valid");
    assert_eq!(c.redis_url.as_deref(), Some("redis://localhost:6379/0"));
    assert_eq!(c.api_keys, ["key-one-0123456789", "key-two-0123456789"]);
    assert_eq!(
        c.allowed_origins,
        Some(vec![
            "https://app.example.com".into(),
            "http://localhost:3000".into()
        ])
    );
    assert_eq!(c.namespaces, ["chat", "game"]);
    assert_eq!(
        (c.max_message_bytes, c.heartbeat),
        (1024, Duration::from_secs(5))
    );
    assert_eq!(c.idle_timeout(), Duration::from_secs(7));
    assert_eq!(
        (c.rate_limit_per_sec, c.demo, c.log_format),
        (0, true, LogFormat::Json)
    );
    assert_eq!(c.jwt_audience.as_deref(), Some("sb"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Flags replace the file's list rather than adding to it.
    let c = load(&[("api_key", "cli-key-0123456789")], Some(file)).expect("valid");
    assert_eq!(c.api_keys, ["cli-key-0123456789"]);
}

#[test]
fn history_rules() {
    let file = r#"
        [[history]]
        pattern = "room:chat*"
        max_messages = 100
        max_age_seconds = 3600

        [[history]]
        pattern = "room:*"
        max_messages = 5
        max_age_seconds = 60
    "#;
    let c = load(&[], Some(file)).expect("valid");
    let chat = HistoryPolicy {
        max_len: 100,
        max_age: Duration::from_secs(3600),
    };
    assert_eq!(c.history.for_channel("room:chat-1"), chat);
    assert_eq!(c.history.for_channel("room:lobby").max_len, 5);
    // The flag's compact form replaces the file's rules.
    let c = load(&[("history", "room:lobby=7/70")], Some(file)).expect("valid");
    assert_eq!(c.history.for_channel("room:lobby").max_len, 7);
    assert!(!c.history.for_channel("room:chat-1").keeps_history());
    let c = load(&[], Some("history = \"room:x=1/2\"")).expect("valid");
    assert_eq!(c.history.for_channel("room:x").max_len, 1);

    assert_eq!(errors(&[("history", "room:*=x")], None).len(), 1);
}

#[test]
fn ranges_and_cross_checks() {
    let bad = [
        ("drain_seconds", "3601"),
        ("lease_seconds", "1"),
        ("max_message_bytes", "15"),
        ("max_message_bytes", "67108865"),
        ("heartbeat_ms", "999"),
        ("max_connections", "0"),
        ("max_connections_per_user", "1000001"),
        ("max_connections_per_user", "-1"),
        ("outbound_queue_frames", "-5"),
        ("bad_frame_window_seconds", "0"),
        ("idempotency_window_seconds", "0"),
        ("idempotency_window_seconds", "86401"),
        ("redis_url", "localhost:6379"),
        ("node_id", "bad id"),
        ("allowed_origins", "https://a.com/"),
        ("namespaces", "user"),
        ("log_level", "info,[[["),
        ("log_format", "xml"),
        ("demo", "maybe"),
        ("dev_echo", "maybe"),
        ("admin_listen", "8080"),
    ];
    for (key, value) in bad {
        let e = errors(&[(key, value)], None);
        assert_eq!(e.len(), 1, "{key}={value}: {e:?}");
    }
    let cross = [
        vec![("idle_timeout_ms", "1000")],
        vec![
            ("outbound_queue_bytes", "1024"),
            ("max_message_bytes", "2048"),
        ],
        vec![("rate_limit_burst", "0")],
        vec![
            ("listen", "0.0.0.0:7000"),
            ("admin_listen", "127.0.0.1:7000"),
        ],
    ];
    for flags in cross {
        assert_eq!(errors(&flags, None).len(), 1, "{flags:?}");
    }
    assert!(load(
        &[("listen", "127.0.0.1:0"), ("admin_listen", "127.0.0.1:0")],
        None
    )
    .is_ok());
    assert!(load(&[("rate_limit", "0"), ("rate_limit_burst", "0")], None).is_ok());
    let uncapped = load(&[("max_connections_per_user", "0")], None).expect("0 = no cap");
    assert_eq!(uncapped.max_connections_per_user, 0);
    let from_file = load(&[], Some("max_connections_per_user = 3")).expect("file key");
    assert_eq!(from_file.max_connections_per_user, 3);
    let e = errors(&[("max_connections_per_user", "many")], None);
    assert!(
        e[0].starts_with("--max-connections-per-user / SWITCHBOARD_MAX_CONNECTIONS_PER_USER: "),
        "{e:?}"
    );
    let star = load(&[("allowed_origins", "*")], None).expect("valid");
    assert_eq!(star.allowed_origins, Some(vec!["*".to_owned()]));
    assert!(star.warnings.iter().any(|w| w.contains("any web page")));
}

#[test]
fn every_setting_is_a_flag_and_env_var() {
    let cmd = ServeArgs::augment_args(clap::Command::new("switchboard"));
    for setting in SETTINGS {
        let key = setting.key;
        let long = key.replace('_', "-");
        // `--rpc-route` is repeatable; its variable holds many routes, hence the plural.
        let long = if key == "rpc_route" {
            "rpc-route".to_owned()
        } else {
            long
        };
        let env = match key {
            "rpc_route" => "SWITCHBOARD_RPC_ROUTES".to_owned(),
            _ => format!("SWITCHBOARD_{}", key.to_ascii_uppercase()),
        };
        assert_eq!(setting.flag, format!("--{long}"));
        assert_eq!(setting.env, env);
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
            .unwrap_or_else(|| panic!("no --{long}"));
        assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env.as_str()));
        let value = if key == "demo" { "true" } else { "x" };
        assert!(
            cli_value(&args(&[(key, value)]), key).is_some(),
            "{key} is not read"
        );
    }
    assert_eq!(cmd.get_arguments().count(), SETTINGS.len());
    let file_keys = SETTINGS.iter().filter(|s| s.in_file).count();
    assert_eq!(
        file_keys,
        SETTINGS.len() - 2,
        "all but config and rpc_route"
    );
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let a = with_secret(&[
        ("api_key", "api-key-0123456789"),
        ("redis_url", "redis://:pw@h/0"),
    ]);
    let c = Config::from_parts(&a, None).expect("valid");
    for text in [format!("{a:?}"), format!("{c:?}")] {
        for secret in [SECRET, "api-key-0123456789", ":pw@"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

#[test]
fn unreadable_config_file_is_one_more_problem() {
    let mut a = args(&[("listen", "bad")]);
    a.config = Some("/nonexistent/switchboard.toml".into());
    let e = Config::load(&a).expect_err("invalid");
    assert_eq!(e.0.len(), 3, "{e}");
    assert!(
        e.0[0].starts_with("--config /nonexistent/switchboard.toml: cannot read"),
        "{e}"
    );
    #[cfg(unix)]
    {
        a.config = Some("/dev/zero".into());
        let e = Config::load(&a).expect_err("endless file");
        assert_eq!(
            e.0[0],
            "--config /dev/zero: cannot read: larger than 1048576 bytes"
        );
        let pem = args(&[("jwt_public_key", "/dev/zero"), ("jwt_algorithm", "EdDSA")]);
        let e = Config::from_parts(&pem, None).expect_err("endless key");
        assert!(e.0[0].contains("larger than"), "{e}");
    }
}

#[test]
fn no_input_panics() {
    let nasty = [
        "",
        " ",
        "é",
        "\u{0}",
        "*",
        ",",
        "=/,",
        "-1",
        "1e9",
        "99999999999999999999999",
        "[::1]",
        "redis://",
        "-----BEGIN",
    ];
    for key in SETTINGS.iter().filter(|s| s.in_file).map(|s| s.key) {
        for value in nasty {
            let mut argv = vec![
                "switchboard".to_owned(),
                format!("--{}={value}", key.replace('_', "-")),
            ];
            if key != "jwt_secret" {
                argv.push(format!("--jwt-secret={SECRET}"));
            }
            let matches = ServeArgs::augment_args(clap::Command::new("switchboard"))
                .try_get_matches_from(argv);
            if let Ok(a) = matches.and_then(|m| ServeArgs::from_arg_matches(&m)) {
                let _ = Config::from_parts(&a, None);
            }
            let mut table = toml::Table::new();
            table.insert(key.to_owned(), toml::Value::String(value.to_owned()));
            let file = toml::to_string(&table).expect("toml");
            let _ = Config::from_parts(&ServeArgs::default(), Some(&file));
        }
    }
    for file in [
        "[[history]]\n",
        "history = 5",
        "history = [1, \"x\"]",
        "[listen]\n",
        "= =",
        "\u{feff}x = 1",
    ] {
        let _ = Config::from_parts(&ServeArgs::default(), Some(file));
    }
}
