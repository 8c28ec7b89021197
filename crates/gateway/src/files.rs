//! Reading the files the node is pointed at (the TOML configuration, PEM certificates and
//! keys) under a size limit, so a wrong path (a device, a huge log) is an error, not a hang.

use std::io::Read as _;
use std::path::Path;

/// The contents of `path`; an error when it is larger than `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(bytes)
}
