//! Salesforce record ids.
//!
//! Owns the mapping between a row of a table and its 18-character id: key prefix (3) +
//! `RO` + a 10-digit base-62 row number + the 3-character case-safe checksum. Because the
//! number is fixed-width base 62 in ASCII order, ids sort like row numbers, so `ORDER BY Id`
//! costs nothing and no id column is stored. It must never hand out an id that does not
//! decode back to the same row.

const B62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
const POD: &[u8; 2] = b"RO";
const DIGITS: usize = 10;

/// Appends the 18-char id of `row` with key prefix `prefix` (3 ASCII chars).
pub fn write_id(out: &mut Vec<u8>, prefix: &[u8; 3], row: u32) {
    let mut id = [0u8; 18];
    id[..3].copy_from_slice(prefix);
    id[3..5].copy_from_slice(POD);
    let mut n = row as u64 + 1;
    for i in (5..5 + DIGITS).rev() {
        id[i] = B62[(n % 62) as usize];
        n /= 62;
    }
    for chunk in 0..3 {
        let mut flags = 0usize;
        for j in 0..5 {
            if id[chunk * 5 + j].is_ascii_uppercase() {
                flags |= 1 << j;
            }
        }
        id[15 + chunk] = SUFFIX[flags];
    }
    out.extend_from_slice(&id);
}

pub fn make_id(prefix: &[u8; 3], row: u32) -> String {
    let mut v = Vec::with_capacity(18);
    write_id(&mut v, prefix, row);
    String::from_utf8(v).unwrap_or_default()
}

/// Splits an id (15 or 18 chars) into its key prefix and row. `None` for anything that is
/// not an id this org could have minted.
pub fn parse_id(id: &str) -> Option<([u8; 3], u32)> {
    let b = id.as_bytes();
    if (b.len() != 15 && b.len() != 18) || &b[3..5] != POD {
        return None;
    }
    let mut n: u64 = 0;
    for &c in &b[5..15] {
        let d = B62.iter().position(|&x| x == c)? as u64;
        n = n.checked_mul(62)?.checked_add(d)?;
    }
    if n == 0 || n > u32::MAX as u64 {
        return None;
    }
    let prefix = [b[0], b[1], b[2]];
    if b.len() == 18 && make_id(&prefix, (n - 1) as u32).as_bytes()[15..] != b[15..] {
        return None;
    }
    Some((prefix, (n - 1) as u32))
}

/// Loose shape check for `MALFORMED_ID`: 15 or 18 alphanumerics.
pub fn looks_like_id(s: &str) -> bool {
    (s.len() == 15 || s.len() == 18) && s.bytes().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort() {
        let a = make_id(b"001", 0);
        let b = make_id(b"001", 61);
        let c = make_id(b"001", 62);
        assert_eq!(a.len(), 18);
        assert!(a < b && b < c);
        assert_eq!(parse_id(&c), Some((*b"001", 62)));
        assert_eq!(parse_id(&c[..15]), Some((*b"001", 62)));
        assert_eq!(parse_id("001RO0000000000AAA"), None);
    }
}
