//! Reading a node's `/metrics` (the Prometheus text format): samples with their labels,
//! and the sums and single values the tests compare.

use std::collections::BTreeMap;

use crate::Node;

/// Every sample of metric `name` in Prometheus text: its labels and value.
pub fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, parse_labels(rest.strip_suffix('}')?)),
                None => (series, BTreeMap::new()),
            };
            (metric == name).then(|| (labels, value.trim().parse().expect("metric value")))
        })
        .collect()
}

/// `a="x",b="y"` → {a: x, b: y} (handles `\"` and `\\` escapes).
pub fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(if e == 'n' { '\n' } else { e });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    labels
}

/// Whether a sample's labels include every pair of `want`.
fn has_labels(labels: &BTreeMap<String, String>, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(v))
}

/// The sum of the samples of `name` whose labels include every pair of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text, name)
        .into_iter()
        .filter(|(l, _)| has_labels(l, labels))
        .map(|(_, v)| v)
        .sum()
}

/// The one sample of `name` with exactly these label values (for `labels` keys); panics
/// with every sample of `name` when there is none.
pub fn metric_one(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let all = samples(text, name);
    let found: Vec<f64> = all
        .iter()
        .filter(|(l, _)| has_labels(l, labels))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one sample of {name} with {labels:?}; all samples: {all:?}"
    );
    found[0]
}

/// The value of the first sample of `name` whose labels include every pair of `labels`,
/// if there is one.
pub fn metric_first(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text, name)
        .into_iter()
        .find(|(l, _)| has_labels(l, labels))
        .map(|(_, v)| v)
}

impl Node {
    /// The sum of the samples of `name` in this node's `/metrics` whose labels include
    /// every pair written in `labels` (`reason="bad_token"`; "" for every sample); 0 when
    /// there is none yet.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let want = parse_labels(labels);
        let want: Vec<(&str, &str)> = want.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        metric_sum(&self.metrics_text().await, name, &want)
    }
}
