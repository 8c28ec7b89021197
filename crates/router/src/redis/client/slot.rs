//! Redis Cluster hash slots: CRC16 (XMODEM) of the key's hash tag, modulo 16384, and a
//! table of short tags, one per slot, to name keys and channels that must live in a
//! given slot (the per-shard liveness probes).

use std::sync::OnceLock;

pub const SLOTS: usize = 16384;

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC16: [u16; 256] = crc16_table();

fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16[((crc >> 8) as u8 ^ b) as usize]
    })
}

/// The part of a key that is hashed: the first `{…}` with something inside, else the key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The hash slot of a key (or shard channel), as Redis Cluster computes it.
pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS as u16
}

/// A short string whose slot is `slot`: `{tag}` puts a key or channel there.
pub fn tag_for(target: u16) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags: Vec<Option<String>> = vec![None; SLOTS];
        let mut left = SLOTS;
        let mut n: u64 = 0;
        while left > 0 {
            let candidate = format!("s{n}");
            let s = slot(candidate.as_bytes()) as usize;
            if tags[s].is_none() {
                tags[s] = Some(candidate);
                left -= 1;
            }
            n += 1;
        }
        tags.into_iter().map(|t| t.expect("every slot")).collect()
    });
    &tags[target as usize % SLOTS]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_cluster() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(slot(b"user:a"), 12527);
        assert_eq!(slot(b"{x}a"), 16287);
        assert_eq!(slot(b"sb:{user:a}:s"), 12527);
        // CRC16/XMODEM's check value; below 16384, so it is the slot.
        assert_eq!(slot(b"123456789"), 0x31C3);
        // An empty tag hashes the whole key; only the first tag counts.
        assert_eq!(slot(b"a{}b"), crc16(b"a{}b") % 16384);
        assert_eq!(slot(b"{}{x}"), crc16(b"{}{x}") % 16384);
        assert_eq!(slot(b"{x}{y}"), slot(b"x"));
    }

    #[test]
    fn every_slot_has_a_tag() {
        for s in [0u16, 1, 5460, 12527, 16383] {
            assert_eq!(slot(format!("p:{{{}}}:probe", tag_for(s)).as_bytes()), s);
        }
    }
}
