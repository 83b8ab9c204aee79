//! The lexical half of the reader: whitespace, strings, numbers, skipping a value, and where
//! an error happened.

use super::{JsonError, Seg, MAX_DEPTH};
use serde::de;

pub(super) struct Reader<'de> {
    pub(super) text: &'de [u8],
    pub(super) src: &'de str,
    pub(super) at: usize,
    pub(super) path: Vec<Seg<'de>>,
    pub(super) depth: usize,
}

impl<'de> Reader<'de> {
    /// Stamps the current path on an error that has none yet.
    pub(super) fn locate(&self, mut e: JsonError) -> JsonError {
        if e.path.is_none() {
            let mut p = String::new();
            for s in &self.path {
                match s {
                    Seg::Key(k) if p.is_empty() => p.push_str(k),
                    Seg::Key(k) => {
                        p.push('.');
                        p.push_str(k);
                    }
                    Seg::Index(i) => p.push_str(&format!("[{i}]")),
                }
            }
            if p.is_empty() {
                p.push('.');
            }
            e.path = Some(p);
        }
        e
    }

    pub(super) fn syntax(&self, what: &str) -> JsonError {
        de::Error::custom(format_args!("{what} at byte {}", self.at))
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    pub(super) fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    pub(super) fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    pub(super) fn eat(&mut self, b: u8) -> Result<(), JsonError> {
        match self.next() {
            Some(x) if x == b => Ok(()),
            _ => Err(self.syntax(&format!("expected `{}`", char::from(b)))),
        }
    }

    pub(super) fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        match self.text.get(self.at..self.at + word.len()) {
            Some(w) if w == word => {
                self.at += word.len();
                Ok(())
            }
            _ => Err(self.syntax("expected value")),
        }
    }

    pub(super) fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.syntax("nesting too deep"));
        }
        Ok(())
    }

    /// A string (the opening quote is next), borrowed when it has no escapes.
    pub(super) fn string(&mut self) -> Result<std::borrow::Cow<'de, str>, JsonError> {
        self.eat(b'"')?;
        let start = self.at;
        // Most strings have no escapes: find the end in one scan and borrow.
        let rest = self.text.get(start..).unwrap_or_default();
        let stop = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        self.at = start + stop.unwrap_or(rest.len());
        match stop.and_then(|i| rest.get(i)) {
            Some(b'"') => {
                let s = self.src.get(start..self.at).unwrap_or_default();
                self.at += 1;
                return Ok(std::borrow::Cow::Borrowed(s));
            }
            Some(b'\\') => {}
            Some(_) => return Err(self.syntax("control character in string")),
            None => return Err(self.syntax("EOF while parsing a string")),
        }
        // Escapes: continue into an owned buffer.
        let mut out: Vec<u8> = self.text.get(start..self.at).unwrap_or_default().to_vec();
        loop {
            match self.next() {
                Some(b'"') => break,
                Some(b'\\') => {
                    let c = match self.next() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(self.syntax("invalid escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                Some(b) if b < 0x20 => return Err(self.syntax("control character in string")),
                Some(b) => out.push(b),
                None => return Err(self.syntax("EOF while parsing a string")),
            }
        }
        String::from_utf8(out)
            .map(std::borrow::Cow::Owned)
            .map_err(|_| self.syntax("invalid UTF-8 in string"))
    }

    pub(super) fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self.text.get(self.at..self.at + 4).unwrap_or_default();
        let text = std::str::from_utf8(digits).unwrap_or_default();
        let v = match (text.len(), u32::from_str_radix(text, 16)) {
            (4, Ok(v)) => v,
            _ => return Err(self.syntax("invalid \\u escape")),
        };
        self.at += 4;
        Ok(v)
    }

    pub(super) fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                return Err(self.syntax("unpaired surrogate"));
            }
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.syntax("unpaired surrogate"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.syntax("invalid \\u escape"))
    }

    /// A number's text (validated as JSON's grammar).
    pub(super) fn number(&mut self) -> Result<&'de str, JsonError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = |r: &mut Self| {
            let s = r.at;
            while matches!(r.peek(), Some(b'0'..=b'9')) {
                r.at += 1;
            }
            r.at > s
        };
        if !digits(self) {
            return Err(self.syntax("invalid number"));
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !digits(self) {
                return Err(self.syntax("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(self) {
                return Err(self.syntax("invalid number"));
            }
        }
        Ok(self.src.get(start..self.at).unwrap_or_default())
    }

    /// Skips one value.
    pub(super) fn skip(&mut self) -> Result<(), JsonError> {
        self.ws();
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{' | b'[') => {
                self.enter()?;
                let close = if self.next() == Some(b'{') {
                    b'}'
                } else {
                    b']'
                };
                self.ws();
                if self.peek() == Some(close) {
                    self.at += 1;
                } else {
                    loop {
                        self.ws();
                        if close == b'}' {
                            self.string()?;
                            self.ws();
                            self.eat(b':')?;
                        }
                        self.skip()?;
                        self.ws();
                        match self.next() {
                            Some(b',') => continue,
                            Some(c) if c == close => break,
                            _ => return Err(self.syntax("expected `,` or a closing bracket")),
                        }
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }
}
