use super::*;

#[test]
fn shards_cover_everything_once() {
    let r: Vec<_> = (0..3).map(|s| shard_range(10, s, 3)).collect();
    assert_eq!(r, vec![0..3, 3..6, 6..10]);
    assert_eq!(shard_range(5, 0, 1), 0..5);
}

#[test]
fn validation_reports_every_problem() {
    use clap::Parser;
    let cli = Cli::try_parse_from([
        "lg",
        "direct",
        "--pairs",
        "1",
        "--rate",
        "1",
        "--duration",
        "1",
        "--via",
        "api",
    ])
    .unwrap();
    let errs = validate(&cli);
    assert_eq!(errs.len(), 4, "{errs:?}"); // targets, jwt secret, api, api key
}

/// `lg <global> direct --pairs 1 --rate 1 --duration 1 <extra>`, parsed.
fn parse_direct(global: &[&str], extra: &[&str]) -> Cli {
    use clap::Parser;
    let mut a = vec!["lg"];
    a.extend_from_slice(global);
    a.extend_from_slice(&["direct", "--pairs", "1", "--rate", "1", "--duration", "1"]);
    a.extend_from_slice(extra);
    Cli::try_parse_from(a).unwrap()
}

fn direct_errs(extra: &[&str]) -> Vec<String> {
    let global = ["--targets", "127.0.0.1:1", "--jwt-secret", "s"];
    validate(&parse_direct(&global, extra))
}

#[test]
fn room_flags_are_checked() {
    assert!(direct_errs(&["--channel", "room"]).is_empty());
    assert!(direct_errs(&["--channel", "room", "--reconnect"]).is_empty());
    assert!(direct_errs(&["--channel", "room", "--room-namespace", "feed"]).is_empty());
    assert_eq!(
        direct_errs(&["--room-namespace", "feed"]),
        ["--room-namespace needs --channel room"]
    );
    for bad in ["user", "Feed", "a:b", ""] {
        let errs = direct_errs(&["--channel", "room", "--room-namespace", bad]);
        assert_eq!(errs.len(), 1, "{bad:?}: {errs:?}");
        assert!(errs[0].starts_with("--room-namespace"), "{errs:?}");
    }
    let errs = direct_errs(&["--channel", "room", "--protocol", "plain", "--via", "api"]);
    assert!(
        errs.iter()
            .any(|e| e == "--channel room needs --protocol switchboard"),
        "{errs:?}"
    );
}

#[test]
fn a_room_namespace_reaches_the_tokens() {
    let cli = |extra: &[&str]| parse_direct(&[], extra).command;
    assert_eq!(room_namespace(&cli(&[])), None);
    assert_eq!(room_namespace(&cli(&["--channel", "room"])), Some("room"));
    assert_eq!(
        room_namespace(&cli(&["--channel", "room", "--room-namespace", "feed"])),
        Some("feed")
    );
}
