//! The owner file's line format: `<crc32 of the JSON, 8 hex digits> <JSON>\n`. A line is
//! complete only with its newline and a matching checksum; the first line that is not ends the
//! file as far as anyone reading it is concerned (a torn tail after a crash), and every
//! complete line before it counts.

use crate::record::Line;

/// One line, ready to append.
pub(crate) fn encode(line: &Line) -> Vec<u8> {
    // A `Line` is plain data (strings, numbers, paths as strings): it always serializes.
    let json = serde_json::to_vec(line).unwrap_or_default();
    let mut out = Vec::with_capacity(json.len() + 10);
    out.extend_from_slice(format!("{:08x} ", crc32fast::hash(&json)).as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
    out
}

/// Every complete line from the start, up to the first torn or corrupt one; also the byte
/// length of that good prefix.
pub(crate) fn decode(bytes: &[u8]) -> (Vec<Line>, usize) {
    let mut lines = Vec::new();
    let mut good = 0;
    for raw in bytes.split_inclusive(|&b| b == b'\n') {
        let Some(body) = raw.strip_suffix(b"\n") else { break };
        let Some(line) = parse(body) else { break };
        lines.push(line);
        good += raw.len();
    }
    (lines, good)
}

fn parse(body: &[u8]) -> Option<Line> {
    let (crc, json) = (body.get(..8)?, body.get(9..)?);
    if body.get(8) != Some(&b' ') {
        return None;
    }
    // Compared as written (lowercase hex), so a case flip in the checksum is corruption too.
    (format!("{:08x}", crc32fast::hash(json)).as_bytes() == crc).then(|| serde_json::from_slice(json).ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_a_flipped_byte_ends_the_file_there() {
        let lines = vec![Line::Release { id: 1 }, Line::Release { id: 2 }, Line::Release { id: 3 }];
        let bytes: Vec<u8> = lines.iter().flat_map(encode).collect();
        assert_eq!(decode(&bytes), (lines.clone(), bytes.len()));
        let first = encode(&lines[0]).len();
        for at in first..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            let (got, _) = decode(&bad);
            // The corrupt line and everything after it are dropped; what came before stays.
            assert!(got.len() < 3 && got[..] == lines[..got.len()], "byte {at}: {got:?}");
            assert!(!got.is_empty());
        }
    }
}
