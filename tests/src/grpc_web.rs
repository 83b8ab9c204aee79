//! A minimal gRPC-Web client codec for the demo and tests: frames, trailers and the protobuf
//! string fields the digimon messages use (so the harness needs no protobuf compiler).

use std::collections::BTreeMap;

/// The binary gRPC-Web content type (what browsers' gRPC-Web clients send).
pub const CONTENT_TYPE: &str = "application/grpc-web+proto";

/// Why a gRPC-Web body could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GrpcWebError {
    /// A frame header or payload is cut short.
    #[error("gRPC-Web body truncated at byte {at} of {len}")]
    Truncated {
        /// Where the missing bytes start.
        at: usize,
        /// The body length.
        len: usize,
    },
    /// A protobuf field is malformed.
    #[error("protobuf message malformed at byte {0}")]
    Protobuf(usize),
}

/// One message as a gRPC-Web data frame: flag 0, big-endian length, bytes.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(message);
    out
}

/// A gRPC-Web response body: its data frames and the trailer frame's fields.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Frames {
    /// Message payloads, in order.
    pub messages: Vec<Vec<u8>>,
    /// Trailers (`grpc-status`, `grpc-message`), names lower-cased.
    pub trailers: Vec<(String, String)>,
}

impl Frames {
    /// A trailer's value.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a gRPC-Web body into frames (flag 0x80 marks the trailer frame).
pub fn parse(body: &[u8]) -> Result<Frames, GrpcWebError> {
    let mut frames = Frames::default();
    let mut at = 0;
    while at < body.len() {
        let truncated = GrpcWebError::Truncated {
            at,
            len: body.len(),
        };
        let header = body.get(at..at + 5).ok_or(truncated.clone())?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let payload = body.get(at + 5..at + 5 + len).ok_or(truncated)?;
        if header[0] & 0x80 != 0 {
            for line in String::from_utf8_lossy(payload).split("\r\n") {
                if let Some((n, v)) = line.split_once(':') {
                    frames
                        .trailers
                        .push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
        } else {
            frames.messages.push(payload.to_vec());
        }
        at += 5 + len;
    }
    Ok(frames)
}

/// A protobuf message built field by field (strings and nested messages only).
#[derive(Debug, Default, Clone)]
pub struct Message(Vec<u8>);

impl Message {
    /// An empty message.
    pub fn new() -> Message {
        Message::default()
    }

    /// Adds a length-delimited field (wire type 2).
    fn bytes(mut self, field: u32, value: &[u8]) -> Message {
        varint(&mut self.0, u64::from(field) << 3 | 2);
        varint(&mut self.0, value.len() as u64);
        self.0.extend_from_slice(value);
        self
    }

    /// Adds a string field.
    pub fn string(self, field: u32, value: &str) -> Message {
        self.bytes(field, value.as_bytes())
    }

    /// Adds a nested message field.
    pub fn message(self, field: u32, value: &Message) -> Message {
        self.bytes(field, &value.0)
    }

    /// The encoded bytes.
    pub fn encode(&self) -> &[u8] {
        &self.0
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Result<u64, GrpcWebError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or(GrpcWebError::Protobuf(*at))?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(GrpcWebError::Protobuf(*at))
}

/// The length-delimited fields of `message` as text, by field number (others skipped).
pub fn strings(message: &[u8]) -> Result<BTreeMap<u32, String>, GrpcWebError> {
    let mut out = BTreeMap::new();
    let mut at = 0;
    while at < message.len() {
        let start = at;
        let key = read_varint(message, &mut at)?;
        let field = u32::try_from(key >> 3).map_err(|_| GrpcWebError::Protobuf(start))?;
        match key & 7 {
            0 => {
                read_varint(message, &mut at)?;
            }
            1 => at += 8,
            5 => at += 4,
            2 => {
                let len = read_varint(message, &mut at)? as usize;
                let value = message
                    .get(at..at + len)
                    .ok_or(GrpcWebError::Protobuf(at))?;
                out.insert(field, String::from_utf8_lossy(value).into_owned());
                at += len;
            }
            _ => return Err(GrpcWebError::Protobuf(start)),
        }
    }
    if at > message.len() {
        return Err(GrpcWebError::Protobuf(message.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_frames() {
        let food = Message::new().string(1, "meat");
        let req = Message::new().string(1, "d0001").message(2, &food);
        // FosterRequest{id: "d0001", food: {name: "meat"}} as protoc would encode it.
        assert_eq!(
            req.encode(),
            b"\x0a\x05d0001\x12\x06\x0a\x04meat".as_slice()
        );
        let mut body = frame(req.encode());
        body.extend_from_slice(&[0x80, 0, 0, 0, 30]);
        body.extend_from_slice(b"grpc-status:0\r\ngrpc-message:\r\n");
        let frames = parse(&body).unwrap();
        assert_eq!(frames.messages, vec![req.encode().to_vec()]);
        assert_eq!(frames.trailer("grpc-status"), Some("0"));
        let fields = strings(&frames.messages[0]).unwrap();
        assert_eq!(fields[&1], "d0001");
        assert_eq!(strings(fields[&2].as_bytes()).unwrap()[&1], "meat");
    }

    #[test]
    fn truncated_input_is_an_error() {
        let body = frame(b"\x0a\x05d0001");
        assert!(matches!(
            parse(&body[..body.len() - 1]),
            Err(GrpcWebError::Truncated { .. })
        ));
        assert!(parse(&body[..3]).is_err());
        assert_eq!(strings(b"\x0a\x09abc"), Err(GrpcWebError::Protobuf(2)));
        // A long string needs a two-byte length.
        let long = "x".repeat(300);
        assert_eq!(
            strings(Message::new().string(3, &long).encode()).unwrap()[&3],
            long
        );
    }
}
