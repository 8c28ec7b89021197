//! Starts that must fail: `switchboard serve` on port 0 with a `--redis-url` the node
//! must refuse, run to its exit, and the checks on how it refused.

use std::time::Duration;

/// Runs `switchboard serve` with `--redis-url url` on port 0 and waits for it to exit:
/// (exit status, stdout, stderr).
pub async fn run_with_url(url: &str) -> (Option<i32>, String, String) {
    let args = [
        "--log-level",
        "warn",
        "--redis-url",
        url,
        "--redis-timeout-ms",
        "1000",
    ];
    let env = [
        ("SWITCHBOARD_JWT_SECRET", crate::SECRET),
        ("SWITCHBOARD_API_KEY", crate::API_KEY),
    ];
    let out = crate::serve_to_exit(&args, &env, Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("switchboard with {url} did not exit within 60 s"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The node must exit with `status`, print nothing about listening, and say each of
/// `says` on stderr.
pub fn assert_refused(what: &str, r: (Option<i32>, String, String), status: i32, says: &[&str]) {
    let (code, stdout, stderr) = r;
    println!("refused, {what}: exit {code:?}, stderr: {}", stderr.trim());
    assert_eq!(code, Some(status), "{what}: exit status; stderr: {stderr}");
    assert!(
        !stdout.contains("listening"),
        "{what}: it must not bind: {stdout}"
    );
    for s in says {
        assert!(
            stderr.contains(s),
            "{what}: stderr must say {s:?}: {stderr}"
        );
    }
}
