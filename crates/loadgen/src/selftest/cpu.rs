//! CPU time from `/proc`: the whole process (`/proc/self/stat`) and single threads
//! (`/proc/self/task/<tid>/stat`), user + system, in seconds. The kernel counts in clock
//! ticks of 10 ms (USER_HZ is 100 on Linux), so a window of a few seconds is needed for a
//! per-message figure.

/// Ticks per second of the `utime`/`stime` fields.
const USER_HZ: f64 = 100.0;

/// CPU seconds of this process (all threads).
pub fn process() -> Option<f64> {
    read("/proc/self/stat")
}

/// CPU seconds of one thread of this process.
pub fn thread(tid: u32) -> Option<f64> {
    read(&format!("/proc/self/task/{tid}/stat"))
}

fn read(path: &str) -> Option<f64> {
    parse(&std::fs::read_to_string(path).ok()?)
}

/// `utime + stime` of a `stat` line. The command name (field 2) is in parentheses and may
/// hold spaces and parentheses itself, so fields are counted from the last `)`.
fn parse(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11); // field 3 (state) is index 0
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// CPU seconds spent between two readings (0 when one is missing).
pub fn delta(a: Option<f64>, b: Option<f64>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => (b - a).max(0.0),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_after_an_odd_command_name() {
        let line = "4242 (a b) (c)) S 1 4242 4242 0 -1 4194560 1024 0 0 0 250 75 0 0 20 0 9 0 \
                    12345 1000000 500 18446744073709551615";
        assert_eq!(parse(line), Some(3.25));
        assert_eq!(parse("garbage"), None);
        assert!(process().is_some_and(|s| s >= 0.0));
        assert_eq!(delta(Some(1.0), None), 0.0);
    }
}
