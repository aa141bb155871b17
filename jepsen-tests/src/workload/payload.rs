//! Secret values of the sizes operators store (a password is 20 bytes, a
//! PEM chain or a PFX 5–20 KB), up to the 25 KiB Key Vault limit the node
//! enforces (`MAX_VALUE_BYTES` in `engine/src/secrets.rs`).
//!
//! A value is `{id}:{len}:{filler}`, exactly `len` bytes, where `id` is the
//! writer's unique operation id and the filler is derived from `id` alone.
//! So a reader recognises which write it sees from the prefix, and can tell
//! from the whole value whether it came back intact: a truncated value, one
//! of the wrong length or with any other byte changed does not check.
//! Lengths are drawn log-uniformly: as many values below 1 KB as between 1
//! and 10 KB, and about one in six above 10 KB.

use rand::Rng;

/// Shortest value written.
pub const MIN_LEN: usize = 100;
/// Longest value written: the largest value the node accepts (25 KiB).
pub const MAX_LEN: usize = 25 * 1024;

/// Draws a value length in `[MIN_LEN, MAX_LEN]`, log-uniformly.
pub fn draw_len(rng: &mut impl Rng) -> usize {
    let (lo, hi) = ((MIN_LEN as f64).ln(), (MAX_LEN as f64).ln());
    let len = rng.random_range(lo..=hi).exp().round() as usize;
    len.clamp(MIN_LEN, MAX_LEN)
}

/// The value of length `len` (at least the header's) for operation `id`.
pub fn value(id: &str, len: usize) -> String {
    let mut v = header(id, len);
    let mut filler = Filler::new(id);
    while v.len() < len {
        v.push(filler.next_char());
    }
    v
}

fn header(id: &str, len: usize) -> String {
    format!("{id}:{len}:")
}

/// The operation id of a value read back if the value is whole, else what
/// is wrong with it (without echoing more than its first bytes).
pub fn check(v: &str) -> Result<String, Malformed> {
    let mut parts = v.splitn(3, ':');
    let (Some(id), Some(len), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Malformed::new(
            None,
            format!("no id:len: prefix in {}", start(v)),
        ));
    };
    let id = id.to_string();
    let Ok(len) = len.parse::<usize>() else {
        return Err(Malformed::new(
            Some(id),
            format!("bad length in {}", start(v)),
        ));
    };
    if v.len() != len {
        let what = format!("{} bytes read back, {len} written", v.len());
        return Err(Malformed::new(Some(id), what));
    }
    let expected = value(&id, len);
    match expected.bytes().zip(v.bytes()).position(|(a, b)| a != b) {
        None => Ok(id),
        Some(at) => {
            let what = format!("{len} bytes as written, but byte {at} differs");
            Err(Malformed::new(Some(id), what))
        }
    }
}

fn start(v: &str) -> String {
    let head: String = v.chars().take(24).collect();
    format!("{head:?} ({} bytes)", v.len())
}

/// A value read back that is not a whole written value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// The operation id in its prefix, when there is one.
    pub id: Option<String>,
    /// What is wrong.
    pub what: String,
}

impl Malformed {
    fn new(id: Option<String>, what: String) -> Self {
        Self { id, what }
    }

    /// The value a history records for it: the id it claims to be, or a
    /// marker no writer ever uses (so every checker sees a foreign value).
    pub fn recorded_value(&self) -> String {
        self.id.clone().unwrap_or_else(|| "<unrecognisable>".into())
    }
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(f, "value of {id}: {}", self.what),
            None => write!(f, "{}", self.what),
        }
    }
}

/// SplitMix64 seeded with FNV-1a of the id: deterministic, fast, and
/// different for every id; characters from the base64 alphabet.
struct Filler(u64);

impl Filler {
    fn new(id: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in id.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self(h)
    }

    fn next_char(&mut self) -> char {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        char::from(ALPHABET[(z & 63) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn lengths_span_the_range_with_many_small_and_some_large() {
        let mut rng = StdRng::seed_from_u64(1);
        let lens: Vec<usize> = (0..10_000).map(|_| draw_len(&mut rng)).collect();
        assert!(lens.iter().all(|&l| (MIN_LEN..=MAX_LEN).contains(&l)));
        let share = |f: &dyn Fn(usize) -> bool| {
            lens.iter().filter(|&&l| f(l)).count() as f64 / lens.len() as f64
        };
        // ln(10)/ln(256) ≈ 0.42 below 1 KB, ln(2.56)/ln(256) ≈ 0.17 above 10 KB.
        assert!((0.38..0.46).contains(&share(&|l| l < 1000)));
        assert!((0.14..0.20).contains(&share(&|l| l > 10_000)));
        assert!(share(&|l| l > 24_000) > 0.0);
    }

    #[test]
    fn whole_values_check_and_name_their_writer() {
        for len in [MIN_LEN, 1234, MAX_LEN] {
            let v = value("p3-17", len);
            assert_eq!(v.len(), len);
            assert_eq!(check(&v), Ok("p3-17".to_string()));
        }
        assert_ne!(value("p3-17", 500)[20..], value("p3-18", 500)[20..]);
    }

    #[test]
    fn truncated_resized_or_altered_values_do_not_check() {
        let v = value("p1-5", 5000);
        let truncated = check(&v[..4096]).unwrap_err();
        assert_eq!(truncated.id.as_deref(), Some("p1-5"));
        assert!(truncated
            .what
            .contains("4096 bytes read back, 5000 written"));
        let mut longer = v.clone();
        longer.push('A');
        assert!(check(&longer).is_err());
        let mut altered = v.into_bytes();
        altered[3000] = if altered[3000] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(check(&altered).unwrap_err().what.contains("byte 3000"));
        // Another writer's filler under this writer's header.
        let swapped = format!("p1-5:500:{}", &value("p2-5", 500)["p2-5:500:".len()..]);
        assert!(check(&swapped).is_err());
        assert!(check("p1-5").is_err());
        assert_eq!(check("x").unwrap_err().recorded_value(), "<unrecognisable>");
    }
}
