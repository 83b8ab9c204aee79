//! Whole-input regular expressions over bytes, matched the way Envoy's RE2 matches paths and
//! header values: `.` is any one byte, `\w`/`\d`/`\s`, `\b` and `(?i)` are ASCII-only, invalid
//! UTF-8 can match, and matching is linear in the input.
//!
//! The engine is `regex-lite` (linear time, ASCII classes, no Unicode tables: a small fraction of
//! the `regex` crate's size in the Wasm module). It matches text, so input bytes are read as
//! Latin-1 (byte `b` is the char U+00bb): every byte is one char, `.` and negated classes take
//! any byte, and `\xHH` in a pattern stands for byte `HH`. Non-ASCII text in a pattern stands
//! for its UTF-8 bytes (`é+` repeats both bytes), as in a non-Unicode byte regex; inside a
//! class it is refused, because a class holds single bytes.

/// Compiled size limit, as before with `regex` (a pattern that compiles bigger is refused).
const SIZE_LIMIT: usize = 1 << 20;

/// Why a pattern is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegexError {
    /// A character outside ASCII inside a class (or escaped), where only single bytes fit.
    #[error("regex parse error: non-ASCII character `{0}` in a class or escape; classes hold single bytes, write them as \\xHH")]
    NonAscii(char),
    /// The engine refused the pattern (syntax, or too big).
    #[error("regex parse error: {0}")]
    Syntax(String),
}

/// A regular expression that must match the whole input.
#[derive(Debug, Clone)]
pub struct ByteRegex(regex_lite::Regex);

impl ByteRegex {
    /// Compiles `pattern` anchored at both ends (`^(?:pattern)$`).
    pub fn whole(pattern: &str) -> Result<Self, RegexError> {
        regex_lite::RegexBuilder::new(&format!("^(?:{})$", latin1_pattern(pattern)?))
            .size_limit(SIZE_LIMIT)
            .build()
            .map(ByteRegex)
            .map_err(|e| RegexError::Syntax(e.to_string()))
    }

    /// True when the whole of `input` matches. ASCII input is matched in place; other input is
    /// read as Latin-1 into a temporary string.
    pub fn is_match(&self, input: &[u8]) -> bool {
        match std::str::from_utf8(input) {
            Ok(text) if text.is_ascii() => self.0.is_match(text),
            _ => {
                let latin1: String = input.iter().map(|&b| char::from(b)).collect();
                self.0.is_match(&latin1)
            }
        }
    }
}

/// Rewrites non-ASCII text outside classes as a group of its UTF-8 bytes (`é` ->
/// `(?:\xC3\xA9)`), so a repetition after it still applies to the whole character.
fn latin1_pattern(pattern: &str) -> Result<String, RegexError> {
    if pattern.is_ascii() {
        return Ok(pattern.to_owned());
    }
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut chars = pattern.chars().peekable();
    // Inside `[...]`: `first` is true right after `[` or `[^`, where `]` is a literal.
    let mut class: Option<bool> = None;
    while let Some(c) = chars.next() {
        match (c, class) {
            ('\\', _) => {
                out.push(c);
                match chars.next() {
                    Some(e) if !e.is_ascii() => return Err(RegexError::NonAscii(e)),
                    Some(e) => out.push(e),
                    None => {}
                }
                class = class.map(|_| false);
            }
            (c, Some(_)) if !c.is_ascii() => return Err(RegexError::NonAscii(c)),
            (c, None) if !c.is_ascii() => {
                out.push_str("(?:");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02X}"));
                }
                out.push(')');
            }
            ('[', None) => {
                out.push(c);
                class = Some(true);
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
            }
            ('[', Some(_)) if chars.peek() == Some(&':') => {
                // An ASCII class like `[:alpha:]`: copy through its closing `:]`.
                out.push(c);
                while let Some(x) = chars.next() {
                    out.push(x);
                    if x == ':' && chars.peek() == Some(&']') {
                        out.push(']');
                        chars.next();
                        break;
                    }
                }
                class = Some(false);
            }
            (']', Some(false)) => {
                out.push(c);
                class = None;
            }
            (c, Some(_)) => {
                out.push(c);
                class = Some(false);
            }
            (c, None) => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, input: &[u8]) -> bool {
        ByteRegex::whole(pattern).unwrap().is_match(input)
    }

    #[test]
    fn whole_input_only() {
        assert!(m("/api/[0-9]+", b"/api/12"));
        assert!(!m("/api/[0-9]+", b"/api/12/x"));
        assert!(!m("/api/[0-9]+", b"x/api/12"));
        assert!(m("a|b", b"b"));
        assert!(!m("a|b", b"ab"));
    }

    #[test]
    fn dot_and_negated_classes_take_any_byte_even_invalid_utf8() {
        assert!(m("/a.b", b"/a\xffb"));
        assert!(!m("/a.b", "/aéb".as_bytes()), "é is two bytes");
        assert!(m("/a..b", "/aéb".as_bytes()));
        assert!(m("[^x]", b"\x80"));
        assert!(m(r"\W", b"\xc3"));
        assert!(m(r"\xff", b"\xff"));
        assert!(!m(r"\xff", "ÿ".as_bytes()));
        assert!(!m(".", b"\n"));
        assert!(m("(?s).", b"\n"));
    }

    #[test]
    fn non_ascii_text_is_its_utf8_bytes() {
        assert!(m("/é+", "/ééé".as_bytes()));
        assert!(!m("/é+", b"/\xc3\xa9\xa9"));
        assert!(m("[a-z]+é[]x]", "abé]".as_bytes()));
        assert!(m("[[:alpha:]]é", "aé".as_bytes()));
        assert!(m(r"\.é", ".é".as_bytes()));
    }

    #[test]
    fn classes_and_case_folding_are_ascii() {
        assert!(m(r"\w+", b"abc_09"));
        assert!(!m(r"\w", "é".as_bytes()));
        assert!(!m(r"\d", "٣".as_bytes()));
        assert!(m("(?i)abc", b"ABC"));
        assert!(!m("(?i)\\xe9", b"\xc9"), "no Latin-1 case folding");
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(matches!(ByteRegex::whole("("), Err(RegexError::Syntax(_))));
        assert!(matches!(
            ByteRegex::whole("[é]"),
            Err(RegexError::NonAscii('é'))
        ));
        assert!(matches!(
            ByteRegex::whole("[]é]"),
            Err(RegexError::NonAscii('é'))
        ));
        assert!(ByteRegex::whole(r"\pL").is_err());
        assert!(ByteRegex::whole("a{1000}{1000}").is_err(), "size limit");
    }
}
