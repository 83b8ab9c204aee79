//! The serde half of the reader: typed entry points, objects and arrays, each handing the
//! visitor only what its type can take.

use super::read::Reader;
use super::{JsonError, Seg};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// The start of the next value, read without knowing the type it becomes (non-generic, so the
/// code per schema type stays a small dispatch).
enum Token<'de> {
    Str(std::borrow::Cow<'de, str>),
    /// `{` consumed.
    Object,
    /// `[` consumed.
    Array,
    Bool(bool),
    Null,
    U64(u64),
    I64(i64),
    /// A number with a fraction or out of range (no field of the schema takes one).
    Other(&'de str),
}

impl<'de> Token<'de> {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match self {
            Token::Str(s) => de::Unexpected::Str(s),
            Token::Object => de::Unexpected::Map,
            Token::Array => de::Unexpected::Seq,
            Token::Bool(b) => de::Unexpected::Bool(*b),
            Token::Null => de::Unexpected::Unit,
            Token::U64(u) => de::Unexpected::Unsigned(*u),
            Token::I64(i) => de::Unexpected::Signed(*i),
            Token::Other(_) => de::Unexpected::Other("floating point"),
        }
    }
}

impl<'de> Reader<'de> {
    fn token(&mut self) -> Result<Token<'de>, JsonError> {
        self.ws();
        Ok(match self.peek() {
            Some(b'"') => Token::Str(self.string()?),
            Some(b'{') => {
                self.enter()?;
                self.at += 1;
                Token::Object
            }
            Some(b'[') => {
                self.enter()?;
                self.at += 1;
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
                    _ => Token::Other(n),
                }
            }
            Some(_) => return Err(self.syntax("expected value")),
            None => return Err(self.syntax("EOF while parsing a value")),
        })
    }

    fn close(&mut self, b: u8) -> Result<(), JsonError> {
        self.ws();
        self.eat(b)?;
        self.depth -= 1;
        Ok(())
    }

    /// The error for a value of the wrong type, worded as serde_json words it.
    fn mismatch(t: &Token<'_>, exp: &dyn de::Expected) -> JsonError {
        match t {
            Token::Other(n) => de::Error::invalid_type(
                de::Unexpected::Other(&format!("floating point `{n}`")),
                exp,
            ),
            t => de::Error::invalid_type(t.unexpected(), exp),
        }
    }

    fn map<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, JsonError> {
        let v = visitor.visit_map(Members {
            de: &mut *self,
            first: true,
        })?;
        self.close(b'}')?;
        Ok(v)
    }

    fn seq<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, JsonError> {
        let v = visitor.visit_seq(Elements {
            de: &mut *self,
            index: 0,
        })?;
        self.close(b']')?;
        Ok(v)
    }
}

fn visit_str<'de, V: Visitor<'de>>(
    s: std::borrow::Cow<'de, str>,
    visitor: V,
) -> Result<V::Value, JsonError> {
    match s {
        std::borrow::Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
        std::borrow::Cow::Owned(s) => visitor.visit_string(s),
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = JsonError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::Str(s) => visit_str(s, visitor),
            Token::Object => self.map(visitor),
            Token::Array => self.seq(visitor),
            Token::Bool(b) => visitor.visit_bool(b),
            Token::Null => visitor.visit_unit(),
            Token::U64(u) => visitor.visit_u64(u),
            Token::I64(i) => visitor.visit_i64(i),
            t @ Token::Other(_) => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    // Each typed entry point only calls the visitor method its type can take, so the derived
    // code for the others is never instantiated.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::Object => self.map(visitor),
            t => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::Array => self.seq(visitor),
            t => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::Str(s) => visit_str(s, visitor),
            t => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::Bool(b) => visitor.visit_bool(b),
            t => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::U64(u) => visitor.visit_u64(u),
            Token::I64(i) => visitor.visit_i64(i),
            t => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.ws();
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        match self.token()? {
            Token::Str(s) => visitor.visit_enum(IntoDeserializer::<JsonError>::into_deserializer(
                s.into_owned(),
            )),
            t => Err(Reader::mismatch(&t, &visitor)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.skip()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u128 f32 f64 char
        bytes byte_buf unit unit_struct tuple tuple_struct
    }
}

struct Members<'a, 'de> {
    de: &'a mut Reader<'de>,
    first: bool,
}

impl<'de> MapAccess<'de> for Members<'_, 'de> {
    type Error = JsonError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, JsonError> {
        let de = &mut *self.de;
        de.ws();
        match de.peek() {
            Some(b'}') => return Ok(None),
            Some(b',') if !self.first => {
                de.at += 1;
                de.ws();
            }
            _ if self.first => {}
            _ => return Err(de.syntax("expected `,` or `}`")),
        }
        self.first = false;
        if de.peek() != Some(b'"') {
            return Err(de.syntax("key must be a string"));
        }
        let key = de.string()?;
        let k = match &key {
            std::borrow::Cow::Borrowed(s) => {
                seed.deserialize(de::value::BorrowedStrDeserializer::<JsonError>::new(s))
            }
            std::borrow::Cow::Owned(s) => {
                seed.deserialize(de::value::StrDeserializer::<JsonError>::new(s))
            }
        };
        de.path.push(Seg::Key(key));
        let k = k.map_err(|e| de.locate(e))?;
        de.ws();
        de.eat(b':').map_err(|e| de.locate(e))?;
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, JsonError> {
        let de = &mut *self.de;
        let v = seed.deserialize(&mut *de).map_err(|e| de.locate(e))?;
        de.path.pop();
        Ok(v)
    }
}

struct Elements<'a, 'de> {
    de: &'a mut Reader<'de>,
    index: usize,
}

impl<'de> SeqAccess<'de> for Elements<'_, 'de> {
    type Error = JsonError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, JsonError> {
        let de = &mut *self.de;
        de.ws();
        match de.peek() {
            Some(b']') => return Ok(None),
            Some(b',') if self.index > 0 => {
                de.at += 1;
            }
            _ if self.index == 0 => {}
            _ => return Err(de.syntax("expected `,` or `]`")),
        }
        de.path.push(Seg::Index(self.index));
        let v = seed.deserialize(&mut *de).map_err(|e| de.locate(e))?;
        de.path.pop();
        self.index += 1;
        Ok(Some(v))
    }
}
