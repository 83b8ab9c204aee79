//! The lexical half of the reader: whitespace, strings, numbers, objects and arrays, skipping a
//! value, and errors that collect their field path on the way out.

use super::{Fail, Seg, MAX_DEPTH};
use std::borrow::Cow;

/// The start of the next value, read without knowing the type it becomes: scalars whole,
/// objects and arrays only their opening bracket.
pub(super) enum Token<'a> {
    Str(Cow<'a, str>),
    /// `{` consumed.
    Object,
    /// `[` consumed.
    Array,
    Bool(bool),
    Null,
    U64(u64),
    I64(i64),
    /// A number with a fraction or out of range (no field of the schema takes one).
    Float(&'a str),
}

pub(super) struct Reader<'a> {
    text: &'a [u8],
    src: &'a str,
    at: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Reader {
            text: src.as_bytes(),
            src,
            at: 0,
            depth: 0,
        }
    }

    pub(super) fn syntax(&self, what: &str) -> Fail {
        Fail::new(format!("{what} at byte {}", self.at))
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    pub(super) fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Result<(), Fail> {
        match self.next() {
            Some(x) if x == b => Ok(()),
            _ => Err(self.syntax(&format!("expected `{}`", char::from(b)))),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Fail> {
        match self.text.get(self.at..self.at + word.len()) {
            Some(w) if w == word => {
                self.at += word.len();
                Ok(())
            }
            _ => Err(self.syntax("expected value")),
        }
    }

    fn enter(&mut self) -> Result<(), Fail> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.syntax("nesting too deep"));
        }
        self.at += 1;
        Ok(())
    }

    /// Where the reader is (to come back to with [`Reader::rewind`]).
    pub(super) fn position(&mut self) -> (usize, usize) {
        self.ws();
        (self.at, self.depth)
    }

    /// Goes back to a [`Reader::position`].
    pub(super) fn rewind(&mut self, (at, depth): (usize, usize)) {
        self.at = at;
        self.depth = depth;
    }

    /// True when only whitespace is left.
    pub(super) fn at_end(&mut self) -> bool {
        self.ws();
        self.at >= self.text.len()
    }

    /// The next value's start (see [`Token`]).
    pub(super) fn token(&mut self) -> Result<Token<'a>, Fail> {
        self.ws();
        Ok(match self.peek() {
            Some(b'"') => Token::Str(self.string()?),
            Some(b'{') => {
                self.enter()?;
                Token::Object
            }
            Some(b'[') => {
                self.enter()?;
                Token::Array
            }
            Some(b't') => {
                self.literal(b"true")?;
                Token::Bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Token::Bool(false)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Token::Null
            }
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number()?;
                match (n.parse::<u64>(), n.parse::<i64>()) {
                    (Ok(u), _) => Token::U64(u),
                    (_, Ok(i)) => Token::I64(i),
                    _ => Token::Float(n),
                }
            }
            Some(_) => return Err(self.syntax("expected value")),
            None => return Err(self.syntax("EOF while parsing a value")),
        })
    }

    /// True (and `null` consumed) when the next value is `null`.
    pub(super) fn null(&mut self) -> Result<bool, Fail> {
        self.ws();
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The members of an object whose `{` was consumed: `f` reads each value; an error in it
    /// gets the key on its path. (`dyn`: one loop for every struct keeps the module small.)
    pub(super) fn members(
        &mut self,
        f: &mut dyn FnMut(&mut Self, &str) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.syntax("key must be a string"));
            }
            let key = self.string()?;
            self.ws();
            self.eat(b':')
                .and_then(|()| f(self, &key))
                .map_err(|e| e.at(Seg::Key(key.to_string())))?;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    break;
                }
                _ => return Err(self.syntax("expected `,` or `}`")),
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// The elements of an array whose `[` was consumed: `f` reads each; an error in it gets the
    /// index on its path.
    pub(super) fn elements(
        &mut self,
        f: &mut dyn FnMut(&mut Self) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        self.ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            f(self).map_err(|e| e.at(Seg::Index(index)))?;
            index += 1;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    break;
                }
                _ => return Err(self.syntax("expected `,` or `]`")),
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// A string (the opening quote is next), borrowed when it has no escapes.
    pub(super) fn string(&mut self) -> Result<Cow<'a, str>, Fail> {
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
                return Ok(Cow::Borrowed(s));
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
            .map(Cow::Owned)
            .map_err(|_| self.syntax("invalid UTF-8 in string"))
    }

    fn hex4(&mut self) -> Result<u32, Fail> {
        let digits = self.text.get(self.at..self.at + 4).unwrap_or_default();
        let text = std::str::from_utf8(digits).unwrap_or_default();
        let v = match (text.len(), u32::from_str_radix(text, 16)) {
            (4, Ok(v)) => v,
            _ => return Err(self.syntax("invalid \\u escape")),
        };
        self.at += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, Fail> {
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
    fn number(&mut self) -> Result<&'a str, Fail> {
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

    /// Skips one value, returning its text.
    pub(super) fn skip(&mut self) -> Result<&'a str, Fail> {
        self.ws();
        let start = self.at;
        match self.token()? {
            Token::Object => self.members(&mut |r, _| r.skip().map(drop))?,
            Token::Array => self.elements(&mut |r| r.skip().map(drop))?,
            _ => {}
        }
        Ok(self.src.get(start..self.at).unwrap_or_default())
    }
}
