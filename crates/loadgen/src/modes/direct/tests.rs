use clap::Parser;

use super::*;
use crate::cli::{Cli, Command, Protocol};

fn args(extra: &[&str]) -> DirectArgs {
    let mut a = vec![
        "lg",
        "direct",
        "--pairs",
        "4",
        "--rate",
        "4",
        "--duration",
        "2",
    ];
    a.extend_from_slice(extra);
    match Cli::try_parse_from(a).unwrap().command {
        Command::Direct(d) => d,
        other => panic!("{other:?}"),
    }
}

fn state(extra: &[&str]) -> Arc<DirectState> {
    Arc::new(DirectState::new(
        &args(extra),
        0..4,
        "lg",
        "run1",
        Arc::new(Stats::default()),
    ))
}

fn recipient(st: &Arc<DirectState>, g: u64) -> Recipient {
    Recipient {
        g,
        st: st.clone(),
        protocol: Protocol::Switchboard,
        pos: None,
        room: st.rooms().then(|| Room {
            channel: st.channel(g),
            pos: None,
        }),
        goaway: None,
    }
}

fn message(channel: &str, offset: u64, s: u64, q: u64) -> Vec<u8> {
    format!(
        r#"{{"type":"message","channel":"{channel}","id":"m-{offset}","epoch":"e1","offset":{offset},"ts":1,"data":{}}}"#,
        payload::build(s, q, 1, 40)
    )
    .into_bytes()
}

const PRESENCE: &[u8] =
    br#"{"type":"presence","channel":"room:lg-run1-p2","user":"lg-run1-r2","event":"join"}"#;

#[test]
fn channels_of_the_pairs() {
    let st = state(&[]);
    assert!(!st.rooms());
    assert_eq!(st.channel(3), "user:lg-run1-r3");
    assert_eq!(st.count(0), 2);
    let st = state(&["--channel", "room"]);
    assert!(st.rooms());
    assert_eq!(st.channel(3), "room:lg-run1-p3");
    let st = state(&["--channel", "room", "--room-namespace", "feed"]);
    assert_eq!(st.channel(0), "feed:lg-run1-p0");
}

#[test]
fn a_user_channel_recipient_does_not_subscribe() {
    let st = state(&[]);
    assert_eq!(recipient(&st, 1).subscribe_frame(), None);
}

#[test]
fn a_room_recipient_subscribes_and_counts_only_its_messages() {
    let st = state(&["--channel", "room"]);
    let mut r = recipient(&st, 2);
    assert_eq!(
        r.subscribe_frame().as_deref(),
        Some(r#"{"type":"subscribe","id":1,"channel":"room:lg-run1-p2"}"#)
    );
    // Anything before the reply keeps the setup waiting; a presence frame counts nothing.
    assert_eq!(r.on_subscribe_text(PRESENCE, 5), None);
    let reply = br#"{"type":"reply","id":1,"ok":true,"epoch":"e1","offset":7}"#;
    assert_eq!(r.on_subscribe_text(reply, 5), Some(Ok(())));
    assert_eq!(r.room.as_ref().unwrap().pos.as_ref().unwrap().offset, 7);

    assert!(matches!(r.on_text(PRESENCE, 10), Control::Continue));
    r.on_text(&message("room:lg-run1-p2", 8, 2, 0), 10);
    r.on_text(&message("room:lg-run1-p2", 9, 2, 1), 10);
    r.on_text(&message("room:lg-run1-p2", 9, 2, 1), 10);
    let s = &st.stats;
    assert_eq!(s.delivered.load(Relaxed), 2);
    assert_eq!(s.duplicated.load(Relaxed), 1);
    assert_eq!(s.out_of_order.load(Relaxed), 0);
    assert_eq!(r.room.as_ref().unwrap().pos.as_ref().unwrap().offset, 9);
    assert_eq!(
        r.pos, None,
        "the personal channel's position is not the room's"
    );
    // A resubscribe (after a reconnect) resumes after the last message seen.
    assert_eq!(
        r.subscribe_frame().as_deref(),
        Some(
            r#"{"type":"subscribe","id":1,"channel":"room:lg-run1-p2","since":{"epoch":"e1","offset":9}}"#
        )
    );
}

#[test]
fn resubscribes_count_failed_recoveries_and_refusals() {
    let st = state(&["--channel", "room"]);
    let mut r = recipient(&st, 1);
    r.room.as_mut().unwrap().pos = Some(Pos {
        epoch: "e1".into(),
        offset: 3,
    });
    let recovered =
        br#"{"type":"reply","id":1,"ok":true,"epoch":"e1","offset":6,"recovered":true}"#;
    assert_eq!(r.on_subscribe_text(recovered, 1), Some(Ok(())));
    // The replay (4..=6) follows and moves the position on.
    assert_eq!(r.room.as_ref().unwrap().pos.as_ref().unwrap().offset, 3);
    assert_eq!(st.stats.recovery_failed.load(Relaxed), 0);

    let gap = br#"{"type":"reply","id":1,"ok":true,"epoch":"e2","offset":0,"recovered":false}"#;
    assert_eq!(r.on_subscribe_text(gap, 1), Some(Ok(())));
    assert_eq!(st.stats.recovery_failed.load(Relaxed), 1);
    assert_eq!(r.room.as_ref().unwrap().pos.as_ref().unwrap().epoch, "e2");

    let refused =
        br#"{"type":"reply","id":1,"ok":false,"error":{"code":"forbidden","message":"no"}}"#;
    assert_eq!(
        r.on_subscribe_text(refused, 1),
        Some(Err("subscribe_refused".into()))
    );
    // Another request's reply is not the subscribe's answer.
    assert_eq!(
        r.on_subscribe_text(br#"{"type":"reply","id":9,"ok":true}"#, 1),
        None
    );
}

#[test]
fn a_sender_sends_again_what_got_no_answer_oldest_first() {
    let st = state(&["--reconnect"]);
    let mut s = Sender {
        g: 2,
        st: st.clone(),
        goaway: None,
    };
    for q in [3, 1, 2, 4] {
        st.written(2, q, &format!("frame-{q}"));
    }
    st.written(1, 9, "another pair's");
    st.ack(2, 2);
    s.on_text(
        br#"{"type":"reply","id":4,"ok":false,"error":{"code":"rate_limited","message":"x"}}"#,
        1,
    );
    st.unwritten(2, 3);
    // 2 answered, 4 refused, 3 never written: only 1 goes again, and only once answered…
    assert_eq!(s.resend(), vec!["frame-1".to_owned()]);
    assert_eq!(st.stats.send_failed.load(Relaxed), 1);
    s.on_text(
        br#"{"type":"reply","id":1,"ok":true,"epoch":"e1","offset":7}"#,
        1,
    );
    // …it is acked once and not sent a third time.
    assert!(s.resend().is_empty());
    assert_eq!(st.stats.acked.load(Relaxed), 2);
}
