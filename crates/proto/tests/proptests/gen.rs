//! Strategies shared by the property tests.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message as _;
use serde_json::{json, Map, Value};
use switchboard_proto::{pb, ClientFrame, Message, Payload, StreamPosition};

/// The frame types a client may send (docs/protocol.md §4, §4b).
pub const CLIENT_TYPES: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "publish",
    "ack",
    "refresh",
    "ping",
    "rpc",
];

/// `cases` cases, and no regression files written next to the sources.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any string: every Unicode scalar value, control characters and quotes included.
pub fn any_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..=max).prop_map(String::from_iter)
}

/// Any JSON value, a few levels deep.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        any_string(12).prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any_string(8), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Number literals serde cannot hold in a `u64`, or that are not integers at all.
pub fn odd_number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{20,40}",
        "-[1-9][0-9]{0,5}",
        "-?[0-9]{1,5}\\.[0-9]{1,5}",
        "-?[0-9]{1,3}[eE][+-]?[0-9]{1,4}",
        Just("18446744073709551616".to_owned()),
        Just("1e400".to_owned()),
    ]
}

pub fn epoch() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

/// A message body: any JSON value (as its compact text) or any bytes.
#[derive(Clone, Debug)]
pub enum Data {
    Json(Value),
    Binary(Vec<u8>),
}

impl Data {
    pub fn payload(&self) -> Payload {
        match self {
            Data::Json(v) => Payload::Json(Arc::from(v.to_string())),
            Data::Binary(b) => Payload::Binary(Bytes::from(b.clone())),
        }
    }

    fn pb(&self) -> pb::Payload {
        (&self.payload()).into()
    }

    /// The JSON frame's fields for this body: `data` or `data_b64`.
    fn json_fields(&self, obj: &mut Map<String, Value>) {
        use base64::Engine as _;
        match self {
            Data::Json(v) => obj.insert("data".into(), v.clone()),
            Data::Binary(b) => obj.insert(
                "data_b64".into(),
                base64::engine::general_purpose::STANDARD.encode(b).into(),
            ),
        };
    }
}

pub fn data() -> impl Strategy<Value = Data> {
    prop_oneof![
        json_value().prop_map(Data::Json),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Data::Binary),
    ]
}

/// A valid client frame, as a test-side model (the crate has no client-frame encoder).
/// Strings the decoder does not check (channels, tokens, methods) are arbitrary: their
/// checks belong to the session.
#[derive(Clone, Debug)]
pub enum Model {
    Subscribe {
        id: Option<u64>,
        channel: String,
        since: Option<StreamPosition>,
        since_as_text: bool,
    },
    Unsubscribe {
        id: Option<u64>,
        channel: String,
    },
    Publish {
        id: Option<u64>,
        channel: String,
        data: Data,
    },
    Ack {
        channel: String,
        offset: u64,
        epoch: Option<String>,
    },
    Refresh {
        id: Option<u64>,
        token: String,
    },
    Ping {
        id: Option<u64>,
    },
    Rpc {
        id: Option<u64>,
        method: String,
        data: Option<Data>,
        traceparent: Option<String>,
    },
}

pub fn model() -> impl Strategy<Value = Model> {
    let id = || proptest::option::of(any::<u64>());
    let s = || any_string(24);
    let since =
        proptest::option::of((epoch(), any::<u64>()).prop_map(|(e, o)| StreamPosition::new(e, o)));
    prop_oneof![
        (id(), s(), since, any::<bool>()).prop_map(|(id, channel, since, since_as_text)| {
            Model::Subscribe {
                id,
                channel,
                since,
                since_as_text,
            }
        }),
        (id(), s()).prop_map(|(id, channel)| Model::Unsubscribe { id, channel }),
        (id(), s(), data()).prop_map(|(id, channel, data)| Model::Publish { id, channel, data }),
        (s(), any::<u64>(), proptest::option::of(epoch())).prop_map(|(channel, offset, epoch)| {
            Model::Ack {
                channel,
                offset,
                epoch,
            }
        }),
        (id(), s()).prop_map(|(id, token)| Model::Refresh { id, token }),
        id().prop_map(|id| Model::Ping { id }),
        (
            id(),
            s(),
            proptest::option::of(data()),
            proptest::option::of("[ -~]{1,60}")
        )
            .prop_map(|(id, method, data, traceparent)| Model::Rpc {
                id,
                method,
                data,
                traceparent
            }),
    ]
}

impl Model {
    pub fn type_name(&self) -> &'static str {
        match self {
            Model::Subscribe { .. } => "subscribe",
            Model::Unsubscribe { .. } => "unsubscribe",
            Model::Publish { .. } => "publish",
            Model::Ack { .. } => "ack",
            Model::Refresh { .. } => "refresh",
            Model::Ping { .. } => "ping",
            Model::Rpc { .. } => "rpc",
        }
    }

    /// The frame as a `switchboard.v1.json` object.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut o = Map::new();
        o.insert("type".into(), self.type_name().into());
        let id = |o: &mut Map<String, Value>, id: &Option<u64>| {
            if let Some(id) = id {
                o.insert("id".into(), (*id).into());
            }
        };
        match self {
            Model::Subscribe {
                id: i,
                channel,
                since,
                since_as_text,
            } => {
                id(&mut o, i);
                o.insert("channel".into(), channel.clone().into());
                if let Some(p) = since {
                    let v = if *since_as_text {
                        format!("{}:{}", p.epoch, p.offset).into()
                    } else {
                        json!({"epoch": p.epoch, "offset": p.offset})
                    };
                    o.insert("since".into(), v);
                }
            }
            Model::Unsubscribe { id: i, channel } => {
                id(&mut o, i);
                o.insert("channel".into(), channel.clone().into());
            }
            Model::Publish {
                id: i,
                channel,
                data,
            } => {
                id(&mut o, i);
                o.insert("channel".into(), channel.clone().into());
                data.json_fields(&mut o);
            }
            Model::Ack {
                channel,
                offset,
                epoch,
            } => {
                o.insert("channel".into(), channel.clone().into());
                o.insert("offset".into(), (*offset).into());
                if let Some(e) = epoch {
                    o.insert("epoch".into(), e.clone().into());
                }
            }
            Model::Refresh { id: i, token } => {
                id(&mut o, i);
                o.insert("token".into(), token.clone().into());
            }
            Model::Ping { id: i } => id(&mut o, i),
            Model::Rpc {
                id: i,
                method,
                data,
                traceparent,
            } => {
                id(&mut o, i);
                o.insert("method".into(), method.clone().into());
                if let Some(d) = data {
                    d.json_fields(&mut o);
                }
                if let Some(t) = traceparent {
                    o.insert("traceparent".into(), t.clone().into());
                }
            }
        }
        o
    }

    /// The frame as `switchboard.v1.proto` bytes (a missing id is 0 there).
    pub fn to_proto(&self) -> Vec<u8> {
        use pb::frame::Kind;
        let kind = match self.clone() {
            Model::Subscribe {
                id, channel, since, ..
            } => Kind::Subscribe(pb::Subscribe {
                id: id.unwrap_or(0),
                channel,
                since: since.map(|p| pb::StreamPosition {
                    epoch: p.epoch,
                    offset: p.offset,
                }),
                ..Default::default()
            }),
            Model::Unsubscribe { id, channel } => Kind::Unsubscribe(pb::Unsubscribe {
                id: id.unwrap_or(0),
                channel,
                ..Default::default()
            }),
            Model::Publish { id, channel, data } => Kind::Publish(pb::Publish {
                id: id.unwrap_or(0),
                channel,
                data: Some(data.pb()),
                ..Default::default()
            }),
            Model::Ack {
                channel,
                offset,
                epoch,
            } => Kind::Ack(pb::Ack {
                channel,
                offset,
                epoch: epoch.unwrap_or_default(),
                ..Default::default()
            }),
            Model::Refresh { id, token } => Kind::Refresh(pb::Refresh {
                id: id.unwrap_or(0),
                token,
                ..Default::default()
            }),
            Model::Ping { id } => Kind::Ping(pb::Ping {
                id: id.unwrap_or(0),
                ..Default::default()
            }),
            Model::Rpc {
                id,
                method,
                data,
                traceparent,
            } => Kind::Rpc(pb::Rpc {
                id: id.unwrap_or(0),
                method,
                data: data.map(|d| d.pb()),
                traceparent: traceparent.unwrap_or_default(),
                ..Default::default()
            }),
        };
        pb::Frame { kind: Some(kind) }.encode_to_vec()
    }

    /// Asserts that `frame` is this model decoded. `proto`: ids were sent as 0 when absent.
    pub fn assert_decoded(&self, frame: &ClientFrame, proto: bool) {
        let id = |id: &Option<u64>| {
            if proto {
                Some(id.unwrap_or(0))
            } else {
                *id
            }
        };
        let null = Payload::Json(Arc::from("null"));
        match (self, frame) {
            (
                Model::Subscribe {
                    id: i,
                    channel: c,
                    since: s,
                    ..
                },
                ClientFrame::Subscribe {
                    id: di,
                    channel: dc,
                    since: ds,
                    ..
                },
            ) => {
                assert_eq!((id(i), c, s), (*di, dc, ds));
            }
            (
                Model::Unsubscribe { id: i, channel: c },
                ClientFrame::Unsubscribe {
                    id: di,
                    channel: dc,
                    ..
                },
            ) => assert_eq!((id(i), c), (*di, dc)),
            (
                Model::Publish {
                    id: i,
                    channel: c,
                    data: d,
                },
                ClientFrame::Publish {
                    id: di,
                    channel: dc,
                    data: dd,
                    ..
                },
            ) => assert_eq!((id(i), c, &d.payload()), (*di, dc, dd)),
            (
                Model::Ack {
                    channel: c,
                    offset: o,
                    epoch: e,
                },
                ClientFrame::Ack {
                    channel: dc,
                    offset: doff,
                    epoch: de,
                    ..
                },
            ) => assert_eq!((c, o, e), (dc, doff, de)),
            (
                Model::Refresh { id: i, token: t },
                ClientFrame::Refresh {
                    id: di, token: dt, ..
                },
            ) => assert_eq!((id(i), t), (*di, dt)),
            (Model::Ping { id: i }, ClientFrame::Ping { id: di, .. }) => {
                assert_eq!(id(i), *di)
            }
            (
                Model::Rpc {
                    id: i,
                    method: m,
                    data: d,
                    traceparent: t,
                },
                ClientFrame::Rpc {
                    id: di,
                    method: dm,
                    data: dd,
                    traceparent: dt,
                    ..
                },
            ) => {
                let d = d.as_ref().map_or(null, Data::payload);
                assert_eq!((id(i), m, &d, t), (*di, dm, dd, dt));
            }
            (m, f) => panic!("{} decoded as {f:?}", m.type_name()),
        }
    }
}

/// A stored or delivered message with arbitrary strings and body.
pub fn message() -> impl Strategy<Value = Message> {
    (
        any_string(24),
        any_string(24),
        proptest::option::of(
            any_string(12).prop_filter("empty `from` means none", |s| !s.is_empty()),
        ),
        epoch(),
        any::<u64>(),
        any::<u64>(),
        data(),
    )
        .prop_map(|(channel, id, from, epoch, offset, ts, data)| Message {
            channel,
            id,
            from,
            epoch,
            offset,
            ts,
            data: data.payload(),
        })
}
