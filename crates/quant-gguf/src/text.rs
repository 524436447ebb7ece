//! Strings that come from a file: the rules keys and tensor names must follow, and
//! [`Escaped`], which shows any such string safely on a terminal.

use std::fmt;

/// Longest tensor name ggml accepts, in bytes: `GGML_MAX_NAME` is 64 with the closing NUL.
pub const MAX_TENSOR_NAME_BYTES: usize = 63;

/// Whether `c` is shown escaped by [`Escaped`] and refused in keys and tensor names: control
/// characters (C0, DEL, C1: `ESC`, `CSI`, `OSC`, `BEL`, `CR`, ...), and the invisible characters
/// that reorder or break text (bidirectional overrides and isolates, line and paragraph
/// separators), which can make a name look like another.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                | '\u{2028}' | '\u{2029}'
        )
}

/// The first unsafe character of `s` ([`is_unsafe_char`]) and its byte offset.
fn first_unsafe(s: &str) -> Option<(usize, char)> {
    s.char_indices().find(|&(_, c)| is_unsafe_char(c))
}

/// Why `key` cannot be a metadata key, or `None` if it can: it must not be empty nor hold an
/// unsafe character ([`is_unsafe_char`]; a NUL makes a C reader see a shorter key).
pub fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("the key is empty".into());
    }
    first_unsafe(key).map(|(at, c)| {
        format!(
            "the key holds control character U+{:04X} at byte {at}",
            c as u32
        )
    })
}

/// Why `name` cannot be a tensor name, or `None` if it can: at most
/// [`MAX_TENSOR_NAME_BYTES`] bytes (ggml's limit), and no unsafe character
/// ([`is_unsafe_char`]).
pub fn tensor_name_problem(name: &str) -> Option<String> {
    if name.len() > MAX_TENSOR_NAME_BYTES {
        return Some(format!(
            "the name is {} bytes long; ggml allows at most {MAX_TENSOR_NAME_BYTES}",
            name.len()
        ));
    }
    first_unsafe(name).map(|(at, c)| {
        format!(
            "the name holds control character U+{:04X} at byte {at}",
            c as u32
        )
    })
}

/// A string from a file, shown so that a terminal cannot be made to do anything with it:
/// every unsafe character ([`is_unsafe_char`]) is written as an escape, `\x1b` below U+0080
/// and `\u{9b}` above, and a backslash as `\\`, so that an escape in the output always stands
/// for a character that was escaped. Everything else is written as it is. Width, fill and
/// alignment (`{:<32}`) apply to the escaped text.
///
/// Every error message of this crate shows keys, tensor names and fields through it, and the
/// CLI's tables do too; machine-readable output (`--json`) keeps the exact strings.
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a str);

impl Escaped<'_> {
    fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => out.write_str("\\\\")?,
                c if is_unsafe_char(c) && (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32)?,
                c if is_unsafe_char(c) => write!(out, "\\u{{{:x}}}", c as u32)?,
                c => out.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_none() && f.precision().is_none() {
            return self.write_to(f);
        }
        let mut s = String::with_capacity(self.0.len());
        self.write_to(&mut s)?;
        f.pad(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_acts_on() {
        let shown = Escaped("a\x1b[2J\u{9b}\u{202e}b\\x\0\r\n\x7f").to_string();
        assert_eq!(shown, "a\\x1b[2J\\u{9b}\\u{202e}b\\\\x\\x00\\x0d\\x0a\\x7f");
        assert!(!shown.chars().any(is_unsafe_char));
        assert_eq!(
            Escaped("blk.0.attn_q.weight").to_string(),
            "blk.0.attn_q.weight"
        );
        assert_eq!(Escaped("é日本").to_string(), "é日本");
        assert_eq!(format!("[{:<6}]", Escaped("a\tb")), "[a\\x09b]");
        assert_eq!(format!("[{:>8}]", Escaped("a\tb")), "[  a\\x09b]");
    }

    #[test]
    fn key_and_name_rules() {
        assert!(key_problem("general.alignment").is_none());
        assert!(key_problem("").unwrap().contains("empty"));
        assert!(key_problem("k\0").unwrap().contains("U+0000 at byte 1"));
        assert!(tensor_name_problem("").is_none());
        assert!(tensor_name_problem(&"x".repeat(63)).is_none());
        assert!(tensor_name_problem(&"x".repeat(64))
            .unwrap()
            .contains("64 bytes"));
        assert!(tensor_name_problem("w\u{2028}").unwrap().contains("U+2028"));
    }
}
