//! `selftest`: what this tool itself adds to what it measures, on this machine.
//!
//! 1. Scheduling: `--tasks` loops wait for their messages' scheduled times exactly as the
//!    modes do (`pace::sleep_until_unix` with `--timer`), at each of `--rates`; the error is
//!    wake-up − scheduled time. Nothing is sent, so this is the schedule alone.
//! 2. Round trips through loopback: the real `direct` mode (`--via ws`, then `--via api`)
//!    against the in-process `reflector`, which routes each message to its recipient's
//!    socket and does nothing else. Its latency is the floor of any `direct` run here.
//! 3. CPU: from `/proc/self/stat` per phase, the reflector's thread subtracted.
//!
//! Layout: `cpu` — `/proc` CPU readings; `reflector` — the server of the round trips.

mod cpu;
mod reflector;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::{ChannelKind, Cli, Command, DirectArgs, SelftestArgs, Via};
use crate::pace::{self, Timer};
use crate::payload::now_us;
use crate::report::{self, Check, Messages, RunInfo};
use crate::run::{self, Ctl, Job};
use crate::stats::{Histo, Stat};

/// Head start of every phase, so setup work is not mistaken for lateness.
const START_AHEAD_US: u64 = 50_000;

/// One rate of the scheduling test.
#[derive(Debug, Serialize)]
pub struct Schedule {
    pub rate: f64,
    pub tasks: u64,
    pub seconds: f64,
    /// Wake-up − scheduled time, µs (values below 1 µs count as 1).
    pub error_us: Stat,
    /// Wake-ups before the scheduled time (must be 0).
    pub early: u64,
    /// CPU of the process per scheduled message, and in % of one core.
    pub cpu_us_per_msg: f64,
    pub cpu_pct: f64,
    /// The pacer thread's share, % of one core (precise timer only).
    pub pacer_cpu_pct: f64,
}

/// One loopback round trip run.
#[derive(Debug, Serialize)]
pub struct RoundTrip {
    pub via: &'static str,
    pub rate: f64,
    pub pairs: u64,
    pub seconds: f64,
    pub messages: Messages,
    /// Receive − scheduled time, µs.
    pub latency_us: Stat,
    /// Send start − scheduled time, µs.
    pub send_lag_us: Stat,
    /// CPU per delivered message, µs: the load generator (process − reflector thread) and
    /// the reflector.
    pub cpu_us_per_msg: f64,
    pub reflector_cpu_us_per_msg: f64,
}

/// The result object of `selftest` (`--json`).
#[derive(Debug, Serialize)]
pub struct SelfReport {
    pub mode: &'static str,
    pub label: Option<String>,
    pub started_unix_ms: u64,
    pub duration_s: f64,
    pub processes: usize,
    pub timer: &'static str,
    pub cpus: usize,
    /// Timer slack of the pacer thread, ns (precise timer; 50,000 is the Linux default).
    pub pacer_slack_ns: Option<u32>,
    pub schedule: Vec<Schedule>,
    pub round_trip: Vec<RoundTrip>,
    pub checks: Vec<Check>,
}

pub fn main(cli: Cli) -> ExitCode {
    let errs = run::validate(&cli);
    if !errs.is_empty() {
        for e in errs {
            eprintln!("switchboard-loadgen: {e}");
        }
        return ExitCode::from(2);
    }
    let Command::Selftest(a) = &cli.command else {
        return ExitCode::from(2);
    };
    let result = run::runtime().block_on(selftest(&cli, a));
    match result {
        Ok(r) => {
            print!("{}", summary(&r));
            if let Some(path) = &cli.common.json {
                let text = serde_json::to_string_pretty(&r).unwrap_or_default();
                if let Err(e) = std::fs::write(path, text + "\n") {
                    eprintln!("switchboard-loadgen: {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            if r.checks.iter().all(|c| c.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("switchboard-loadgen: selftest: {e}");
            ExitCode::from(2)
        }
    }
}

async fn selftest(cli: &Cli, a: &SelftestArgs) -> Result<SelfReport, String> {
    let started = now_us();
    let timer = cli.common.timer;
    let quiet = cli.common.quiet;
    let say = |m: String| {
        if !quiet {
            eprintln!("[loadgen selftest] {m}");
        }
    };
    if timer == Timer::Precise {
        // Start the pacer thread: it records its id and timer slack as it starts.
        for _ in 0..100 {
            if pace::pacer().slack_ns().is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    let mut schedule = Vec::new();
    for &rate in &a.rates {
        say(format!("scheduling at {rate}/s for {} s", a.seconds));
        schedule.push(schedule_run(rate, a.tasks, a.seconds, timer).await);
    }
    let refl = reflector::start().map_err(|e| format!("reflector: {e}"))?;
    let mut round_trip = Vec::new();
    for via in [Via::Ws, Via::Api] {
        say(format!(
            "round trips via {} at {}/s for {} s",
            via_name(via),
            a.rtt_rate,
            a.rtt_seconds
        ));
        round_trip.push(round_trip_run(cli, a, via, &refl).await?);
    }
    let early: u64 = schedule.iter().map(|s| s.early).sum();
    let lost: u64 = round_trip.iter().map(|r| r.messages.lost).sum();
    let undelivered: u64 = round_trip
        .iter()
        .map(|r| r.messages.scheduled - r.messages.delivered.min(r.messages.scheduled))
        .sum();
    let check = |name, value: u64| Check {
        name,
        limit: json!(0),
        value: json!(value),
        ok: value == 0,
    };
    Ok(SelfReport {
        mode: "selftest",
        label: cli.common.label.clone(),
        started_unix_ms: started / 1000,
        duration_s: ((now_us() - started) as f64 / 1e4).round() / 100.0,
        processes: 1,
        timer: timer.name(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        pacer_slack_ns: (timer == Timer::Precise)
            .then(|| pace::pacer().slack_ns())
            .flatten(),
        schedule,
        round_trip,
        checks: vec![
            check("schedule_early", early),
            check("round_trip_undelivered", undelivered),
            check("round_trip_lost", lost),
        ],
    })
}

fn via_name(via: Via) -> &'static str {
    match via {
        Via::Ws => "ws",
        Via::Api => "api",
    }
}

/// `tasks` loops share the messages of `rate` × `seconds` as `direct` pairs do (message j
/// belongs to loop j % tasks, scheduled at t0 + j / rate).
async fn schedule_run(rate: f64, tasks: u64, seconds: f64, timer: Timer) -> Schedule {
    let n = (rate * seconds).round().max(1.0) as u64;
    let hist = Arc::new(Histo::default());
    let early = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let pacer_tid = (timer == Timer::Precise)
        .then(|| pace::pacer().tid())
        .flatten();
    let (cpu0, pacer0) = (cpu::process(), pacer_tid.and_then(cpu::thread));
    let t0 = now_us() + START_AHEAD_US;
    let mut set = JoinSet::new();
    for k in 0..tasks.min(n) {
        let (hist, early, stop) = (hist.clone(), early.clone(), stop.clone());
        set.spawn(async move {
            for j in (k..n).step_by(tasks as usize) {
                let at = t0 + (j as f64 * 1e6 / rate) as u64;
                pace::sleep_until_unix(at, timer, &stop).await;
                let now = now_us();
                if now < at {
                    early.fetch_add(1, Relaxed);
                } else {
                    hist.record(now - at);
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let wall = (now_us() - t0 + START_AHEAD_US) as f64 / 1e6;
    let used = cpu::delta(cpu0, cpu::process());
    let pacer = cpu::delta(pacer0, pacer_tid.and_then(cpu::thread));
    Schedule {
        rate,
        tasks: tasks.min(n),
        seconds,
        error_us: Stat::of(&hist.snapshot()),
        early: early.load(Relaxed),
        cpu_us_per_msg: round1(used * 1e6 / n as f64),
        cpu_pct: round1(100.0 * used / wall),
        pacer_cpu_pct: round1(100.0 * pacer / wall),
    }
}

/// The real `direct` mode against the reflector, in this process.
async fn round_trip_run(
    cli: &Cli,
    a: &SelftestArgs,
    via: Via,
    refl: &reflector::Reflector,
) -> Result<RoundTrip, String> {
    let mut common = cli.common.clone();
    common.targets = vec![refl.addr.to_string()];
    common.api = vec![format!("http://{}", refl.addr)];
    common.api_key = Some("selftest".into());
    common.jwt_secret = Some("selftest-secret-not-checked-by-the-reflector".into());
    common.protocol = crate::cli::Protocol::Switchboard;
    common.quiet = true;
    let args = DirectArgs {
        pairs: a.rtt_pairs,
        rate: a.rtt_rate,
        duration: a.rtt_seconds,
        via,
        channel: ChannelKind::User,
        room_namespace: None,
        batch: 1,
        batch_linger_ms: 5,
        payload_bytes: 64,
        reconnect: false,
        settle_seconds: 3.0,
        max_reconnect_ms: 5000,
        concurrency: 256,
    };
    let job = Job {
        cli: Cli {
            common: common.clone(),
            command: Command::Direct(args),
        },
        run_id: format!("st{}", now_us() % 1_000_000),
        shard: 0,
        processes: 1,
        sources: Vec::new(),
        sources_everywhere: false,
    };
    let (ctl, ready_rx, go_tx) = Ctl::new(CancellationToken::new());
    // CPU readings at the start signal (setup excluded) and after the run (the settle and
    // the final close included: a few ms).
    let refl_tid = refl.tid;
    let at_go = tokio::spawn(async move {
        ready_rx.await.ok()?;
        let readings = (cpu::process(), refl_tid.and_then(cpu::thread));
        let _ = go_tx.send(now_us() + START_AHEAD_US);
        Some(readings)
    });
    let mut part = run::run_shard(job, ctl).await?;
    let (cpu1, refl1) = (cpu::process(), refl_tid.and_then(cpu::thread));
    let Ok(Some((cpu0, refl0))) = at_go.await else {
        return Err("the round trip run never got ready".into());
    };
    part.timeline.clear();
    let refl_used = cpu::delta(refl0, refl1);
    let info = RunInfo {
        mode: "direct",
        protocol: "switchboard",
        label: None,
        started_unix_ms: 0,
        duration_s: 0.0,
        processes: 1,
        rate_target: Some(a.rtt_rate),
    };
    let r = report::merge(&info, &[part], &common)?;
    let messages = r.messages.unwrap_or_default();
    let delivered = messages.delivered.max(1) as f64;
    let used = cpu::delta(cpu0, cpu1);
    Ok(RoundTrip {
        via: via_name(via),
        rate: a.rtt_rate,
        pairs: a.rtt_pairs,
        seconds: a.rtt_seconds,
        latency_us: r
            .latency_us
            .unwrap_or_else(|| Stat::of(&crate::stats::new_hist())),
        send_lag_us: r
            .send_lag_us
            .unwrap_or_else(|| Stat::of(&crate::stats::new_hist())),
        cpu_us_per_msg: round1((used - refl_used).max(0.0) * 1e6 / delivered),
        reflector_cpu_us_per_msg: round1(refl_used * 1e6 / delivered),
        messages,
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The human summary (stdout).
pub fn summary(r: &SelfReport) -> String {
    let mut s = String::new();
    let slack = r
        .pacer_slack_ns
        .map(|n| format!(", pacer timer slack {n} ns"))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "selftest: the load generator's own floor on this machine ({} CPUs, timer {}{slack}), {:.1} s",
        r.cpus, r.timer, r.duration_s
    );
    if let Some(first) = r.schedule.first() {
        let _ = writeln!(
            s,
            "scheduling error, wake-up − scheduled (µs; {} loops, {} s per rate):",
            first.tasks, first.seconds
        );
    }
    let _ = writeln!(
        s,
        "  {:>8} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>11} {:>6} {:>7}",
        "rate/s", "count", "p50", "p99", "p999", "max", "early", "CPU µs/msg", "CPU %", "pacer %"
    );
    for x in &r.schedule {
        let e = &x.error_us;
        let _ = writeln!(
            s,
            "  {:>8} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>11} {:>6} {:>7}",
            x.rate,
            e.count,
            e.p50,
            e.p99,
            e.p999,
            e.max,
            x.early,
            x.cpu_us_per_msg,
            x.cpu_pct,
            x.pacer_cpu_pct
        );
    }
    if let Some(first) = r.round_trip.first() {
        let _ = writeln!(
            s,
            "loopback round trip, receive − scheduled (µs; `direct`, {} pairs, {}/s, {} s, \
             against an in-process reflector):",
            first.pairs, first.rate, first.seconds
        );
    }
    let _ = writeln!(
        s,
        "  {:>4} {:>9} {:>6} {:>6} {:>6} {:>6} {:>6} {:>9} {:>11} {:>12}",
        "via",
        "delivered",
        "p50",
        "p90",
        "p99",
        "p999",
        "max",
        "lag p99",
        "CPU µs/msg",
        "reflector µs"
    );
    for x in &r.round_trip {
        let l = &x.latency_us;
        let _ = writeln!(
            s,
            "  {:>4} {:>9} {:>6} {:>6} {:>6} {:>6} {:>6} {:>9} {:>11} {:>12}",
            x.via,
            x.messages.delivered,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            x.send_lag_us.p99,
            x.cpu_us_per_msg,
            x.reflector_cpu_us_per_msg
        );
    }
    for c in &r.checks {
        let _ = writeln!(s, "{c}");
    }
    s
}
