//! The token settings: a secret, a public key or a JWKS URL, and what goes with each.

use super::*;

#[test]
fn jwt_settings() {
    let both = errors(
        &[
            ("jwt_public_key", &key_path("rsa.pub")),
            ("jwt_algorithm", "RS256"),
        ],
        None,
    );
    assert!(both[0].contains("only one of"), "{both:?}");

    let rs = |flags: &[(&str, &str)]| Config::from_parts(&args(flags), None);
    let c = rs(&[
        ("jwt_public_key", &key_path("rsa.pub")),
        ("jwt_algorithm", "RS256"),
    ])
    .expect("valid");
    assert_eq!(
        (c.jwt_algorithm, c.jwt_secret.as_deref()),
        (Some(Algorithm::RS256), None)
    );
    let inline = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/ec256.pub"));
    assert!(rs(&[("jwt_public_key", inline), ("jwt_algorithm", "ES256")]).is_ok());

    let problems = [
        (
            vec![("jwt_public_key", key_path("rsa.pub"))],
            "--jwt-algorithm is required",
        ),
        (
            vec![
                ("jwt_public_key", key_path("rsa.pub")),
                ("jwt_algorithm", "HS256".into()),
            ],
            "needs --jwt-secret",
        ),
        (
            vec![
                ("jwt_public_key", key_path("missing.pub")),
                ("jwt_algorithm", "RS256".into()),
            ],
            "cannot read",
        ),
        (
            vec![
                ("jwt_public_key", key_path("ec256.pub")),
                ("jwt_algorithm", "RS256".into()),
            ],
            "SWITCHBOARD_JWT_PUBLIC_KEY: not a PEM RSA",
        ),
        (
            vec![
                ("jwt_secret", "s".into()),
                ("jwt_algorithm", "RS256".into()),
            ],
            "needs --jwt-public-key",
        ),
        (
            vec![("jwt_secret", "s".into()), ("jwt_algorithm", "none".into())],
            "not a supported algorithm",
        ),
        (
            vec![("jwt_secret", " ".into())],
            "set --jwt-secret, --jwt-public-key or --jwt-jwks-url",
        ),
    ];
    for (flags, expected) in problems {
        let flags: Vec<(&str, &str)> = flags.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let e = rs(&flags).expect_err("invalid");
        assert_eq!(e.0.len(), 1, "{e}");
        assert!(e.0[0].contains(expected), "{flags:?}: {e}");
    }
    let file = format!(
        "jwt_public_key = {:?}\njwt_algorithm = \"EdDSA\"\n",
        key_path("rsa.pub")
    );
    let e = Config::from_parts(&args(&[]), Some(&file)).expect_err("invalid");
    assert_eq!(
        e.0,
        ["config file: jwt_public_key: not a PEM Ed25519 public key"]
    );
    let c =
        Config::from_parts(&args(&[]), Some(&format!("jwt_secret = {SECRET:?}"))).expect("valid");
    assert_eq!(c.jwt_secret.as_deref(), Some(SECRET));
    let c = load(&[("jwt_secret", "short"), ("jwt_algorithm", "hs512")], None).expect("valid");
    assert_eq!(c.jwt_algorithm, Some(Algorithm::HS512));
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("shorter than 32 bytes")));
}

#[test]
fn jwks_settings() {
    let jwks = |flags: &[(&str, &str)]| Config::from_parts(&args(flags), None);
    let url = (
        "jwt_jwks_url",
        "https://idp.example.com/.well-known/jwks.json",
    );
    let c = jwks(&[
        url,
        ("jwt_audience", "sb"),
        ("jwt_issuer", "https://idp.example.com/"),
    ])
    .expect("valid");
    assert_eq!(c.jwt_jwks_url.as_deref(), Some(url.1));
    assert_eq!((c.jwt_algorithm, c.jwt_secret.as_deref()), (None, None));
    assert!(
        c.warnings.iter().all(|w| !w.contains("http://")),
        "{:?}",
        c.warnings
    );
    let c = jwks(&[url, ("jwt_algorithm", "ES256")]).expect("valid");
    assert_eq!(c.jwt_algorithm, Some(Algorithm::ES256));
    let c = jwks(&[("jwt_jwks_url", "http://127.0.0.1:9/jwks")]).expect("valid");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("--jwt-jwks-url uses http://")),
        "{:?}",
        c.warnings
    );

    let problems: [(&[(&str, &str)], &str); 8] = [
        (&[url, ("jwt_secret", SECRET)], "only one of"),
        (&[url, ("jwt_public_key", "/x.pem")], "only one of"),
        (
            &[url, ("jwt_algorithm", "HS256")],
            "cannot be used with --jwt-jwks-url",
        ),
        (
            &[("jwt_jwks_url", "ftp://idp/jwks")],
            "--jwt-jwks-url / SWITCHBOARD_JWT_JWKS_URL",
        ),
        (&[("jwt_jwks_url", "https://u:p@idp/jwks")], "credentials"),
        (
            &[url, ("jwt_jwks_min_refresh_seconds", "0")],
            "jwt-jwks-min-refresh-seconds",
        ),
        (
            &[
                url,
                ("jwt_jwks_min_refresh_seconds", "600"),
                ("jwt_jwks_max_refresh_seconds", "300"),
            ],
            "is shorter than --jwt-jwks-min-refresh-seconds 600",
        ),
        (
            &[url, ("jwt_jwks_allow_start_without_keys", "maybe")],
            "allow-start-without-keys",
        ),
    ];
    for (flags, expected) in problems {
        match jwks(flags) {
            Ok(_) => panic!("{flags:?} accepted"),
            Err(ConfigErrors(e)) => {
                assert!(e.iter().any(|l| l.contains(expected)), "{flags:?}: {e:?}")
            }
        }
    }
    let file =
        "jwt_jwks_url = \"https://idp.example.com/jwks\"\njwt_jwks_min_refresh_seconds = 5\n\
                jwt_jwks_max_refresh_seconds = 600\njwt_jwks_allow_start_without_keys = true\n";
    assert!(Config::from_parts(&args(&[]), Some(file)).is_ok());
}
