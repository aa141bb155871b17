//! "Errors never echo secret input": does a message contain a piece of a
//! secret? A hit may be chance (a secret that happens to spell part of a
//! fixed message), so callers confirm it by re-running with the secret
//! [`scramble`]d: a message that follows the input is a real echo.

use std::collections::HashSet;

/// Shortest run of secret characters counted as an echo.
pub const WINDOW: usize = 12;

/// The first [`WINDOW`]-character piece of `secret` that occurs in
/// `message` (or all of a shorter secret of at least 8 characters).
pub fn echoed<'a>(message: &str, secret: &'a str) -> Option<&'a str> {
    let chars: Vec<(usize, char)> = secret.char_indices().collect();
    if chars.len() < WINDOW {
        return (chars.len() >= 8 && message.contains(secret)).then_some(secret);
    }
    let msg: Vec<char> = message.chars().collect();
    if msg.len() < WINDOW {
        return None;
    }
    let grams: HashSet<&[char]> = msg.windows(WINDOW).collect();
    let secret_chars: Vec<char> = chars.iter().map(|(_, c)| *c).collect();
    secret_chars
        .windows(WINDOW)
        .position(|w| grams.contains(w))
        .map(|i| {
            let start = chars[i].0;
            let end = chars
                .get(i + WINDOW)
                .map_or(secret.len(), |(offset, _)| *offset);
            &secret[start..end]
        })
}

/// `s` with every ASCII letter and digit moved to the next one of its
/// class, hex digits staying hex digits (`f`→`a`, `z`→`g`, `9`→`0`): same
/// length and character classes, so base64 and hex stay valid, but every
/// piece of it reads differently.
pub fn scramble(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='e' | 'g'..='y' | 'A'..='E' | 'G'..='Y' | '0'..='8' => char::from(c as u8 + 1),
            'f' => 'a',
            'F' => 'A',
            'z' => 'g',
            'Z' => 'G',
            '9' => '0',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_piece_of_a_long_secret() {
        let secret = "aaaa-this-is-the-secret-zzzz";
        assert_eq!(
            echoed("bad value is-the-secre!", secret),
            Some("is-the-secre")
        );
        assert_eq!(echoed("nothing here at all, really", secret), None);
        assert_eq!(echoed("short 12345678 x", "12345678"), Some("12345678"));
        assert_eq!(echoed("short 1234567 x", "1234567"), None);
    }

    #[test]
    fn scramble_keeps_classes() {
        assert_eq!(scramble("afgz-AFGZ_09"), "bahg-BAHG_10");
    }
}
