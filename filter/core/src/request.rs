//! Read-only views of a request's headers: the proxy-wasm serialized map the host hands over in
//! one call, and the in-memory [`HeaderList`] that tests and local replies use; and
//! [`HeaderMap`], the changes the engine and CORS write to a header map.
//!
//! The engine reads every request header it needs from one snapshot, so a request costs one
//! host call for reading, however many conditions the config has, and reading allocates nothing.

/// Read access to the request headers as they arrived. Names are compared ASCII
/// case-insensitively (Envoy hands them over lower-case; a test list may not).
pub trait RequestHeaders {
    /// Every value of `name`, in the order they arrived.
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's;

    /// The first value of `name`, if present.
    fn first<'s>(&'s self, name: &'s str) -> Option<&'s [u8]> {
        self.values(name).next()
    }
}

/// A zero-copy view of a proxy-wasm header map: a little-endian `u32` count, then a (name
/// length, value length) `u32` pair per header, then each name and value followed by a NUL.
///
/// The one pass that checks the encoding also notes where the first value of each name in
/// [`KNOWN`] is, so the engine's reads of those (every request's) cost no scan; other names
/// (header conditions) scan the map.
#[derive(Debug, Clone, Copy)]
pub struct Pairs<'a> {
    count: usize,
    sizes: &'a [u8],
    data: &'a [u8],
    /// Per [`KNOWN`] name, the first value as (start, end) in `data`.
    known: [Option<(u32, u32)>; KNOWN.len()],
}

/// The names every request reads: routing, CORS, redirects and the filter's reserved headers.
const KNOWN: [&str; 9] = [
    ":authority",
    ":path",
    ":method",
    ":scheme",
    "origin",
    crate::upstream::UPSTREAM_HEADER,
    crate::upstream::GRPC_WEB_HEADER,
    "access-control-request-method",
    "access-control-request-headers",
];

/// The index of `name` in [`KNOWN`] (ASCII case-insensitive, as every lookup compares): the
/// length and one byte pick the only candidate, one comparison confirms it (this runs for every
/// header of every request).
fn known(name: &[u8]) -> Option<usize> {
    let byte = |i: usize| name.get(i).map_or(0, u8::to_ascii_lowercase);
    let candidate = match (name.len(), byte(1)) {
        (10, b'a') => 0,
        (5, _) => 1,
        (7, b'm') => 2,
        (7, b's') => 3,
        (6, _) => 4,
        (15, _) if byte(7) == b'u' => 5,
        (15, _) => 6,
        (29, _) => 7,
        (30, _) => 8,
        _ => return None,
    };
    // Envoy hands names lower-case, as they are here: compare exactly first.
    let k = KNOWN.get(candidate)?.as_bytes();
    (k == name || k.eq_ignore_ascii_case(name)).then_some(candidate)
}

/// The host's header map bytes are not in the proxy-wasm map encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the host's header map is malformed (proxy-wasm map encoding)")]
pub struct MalformedPairs;

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

impl<'a> Pairs<'a> {
    /// Checks the encoding once, so iteration never has to fail.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MalformedPairs> {
        let mut pairs = Pairs {
            count: 0,
            sizes: &[],
            data: &[],
            known: [None; KNOWN.len()],
        };
        if bytes.is_empty() {
            return Ok(pairs);
        }
        let count = u32_at(bytes, 0).ok_or(MalformedPairs)?;
        let sizes_end = count
            .checked_mul(8)
            .and_then(|n| n.checked_add(4))
            .ok_or(MalformedPairs)?;
        let sizes = bytes.get(4..sizes_end).ok_or(MalformedPairs)?;
        let data = bytes.get(sizes_end..).ok_or(MalformedPairs)?;
        // Offsets fit in u32: the whole map is at most u32::MAX bytes (its lengths are u32).
        let offset = |n: usize| u32::try_from(n).map_err(|_| MalformedPairs);
        let mut at = 0usize;
        for i in 0..count {
            let k = u32_at(sizes, i * 8).ok_or(MalformedPairs)?;
            let v = u32_at(sizes, i * 8 + 4).ok_or(MalformedPairs)?;
            let value_at = at.checked_add(k).ok_or(MalformedPairs)? + 1;
            let end = value_at.checked_add(v).ok_or(MalformedPairs)?;
            if end >= data.len() {
                return Err(MalformedPairs);
            }
            if let Some(slot) = data
                .get(at..at + k)
                .and_then(known)
                .and_then(|j| pairs.known.get_mut(j))
            {
                if slot.is_none() {
                    *slot = Some((offset(value_at)?, offset(end)?));
                }
            }
            at = end + 1;
        }
        pairs.count = count;
        pairs.sizes = sizes;
        pairs.data = data;
        Ok(pairs)
    }

    /// Every (name, value) pair in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let (sizes, data) = (self.sizes, self.data);
        let mut at = 0usize;
        (0..self.count).map_while(move |i| {
            let k = u32_at(sizes, i * 8)?;
            let v = u32_at(sizes, i * 8 + 4)?;
            let name = data.get(at..at + k)?;
            let value = data.get(at + k + 1..at + k + 1 + v)?;
            at += k + v + 2;
            Some((name, value))
        })
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl RequestHeaders for Pairs<'_> {
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    fn first<'s>(&'s self, name: &'s str) -> Option<&'s [u8]> {
        match known(name.as_bytes()).and_then(|i| self.known.get(i)) {
            Some(slot) => {
                let (start, end) = (*slot)?;
                self.data.get(start as usize..end as usize)
            }
            None => self.values(name).next(),
        }
    }
}

/// An in-memory header list: local replies are built in it, and tests use it as a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<(String, Vec<u8>)>);

impl HeaderList {
    /// Builds a list from `(name, value)` pairs; names are lower-cased as Envoy does.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        HeaderList(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    /// The first value of `name` as text (lossy), for assertions and logs.
    pub fn text(&self, name: &str) -> Option<String> {
        self.first(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The proxy-wasm map encoding of this list (what the host hands over).
    pub fn to_pairs_bytes(&self) -> Vec<u8> {
        let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        let mut out = Vec::new();
        out.extend_from_slice(&len32(self.0.len()));
        for (k, v) in &self.0 {
            out.extend_from_slice(&len32(k.len()));
            out.extend_from_slice(&len32(v.len()));
        }
        for (k, v) in &self.0 {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }
}

impl RequestHeaders for HeaderList {
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.0
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Changes to a header map. Names are lower-case.
pub trait HeaderMap {
    /// Error of the underlying host (never produced by in-memory maps).
    type Error;
    /// Replaces all values of `name`.
    fn set(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error>;
    /// Appends a value.
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error>;
    /// Removes all values of `name`.
    fn remove(&mut self, name: &str) -> Result<(), Self::Error>;
}

impl HeaderMap for HeaderList {
    type Error = std::convert::Infallible;
    fn set(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error> {
        self.0.retain(|(k, _)| k != name);
        self.0.push((name.to_owned(), value.to_vec()));
        Ok(())
    }
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error> {
        self.0.push((name.to_owned(), value.to_vec()));
        Ok(())
    }
    fn remove(&mut self, name: &str) -> Result<(), Self::Error> {
        self.0.retain(|(k, _)| k != name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_and_repeated_values() {
        let list = HeaderList::from_pairs([
            (":authority", "a.test"),
            ("x-p", "zzz"),
            ("X-P", "abc"),
            ("empty", ""),
        ]);
        let bytes = list.to_pairs_bytes();
        let pairs = Pairs::parse(&bytes).unwrap();
        assert_eq!(pairs.len(), 4);
        assert_eq!(pairs.first(":authority"), Some(&b"a.test"[..]));
        assert_eq!(
            pairs.values("x-p").collect::<Vec<_>>(),
            vec![&b"zzz"[..], &b"abc"[..]]
        );
        assert_eq!(pairs.first("empty"), Some(&b""[..]));
        assert_eq!(pairs.first("absent"), None);
        assert_eq!(pairs.first(":path"), None);
        assert!(Pairs::parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn every_known_name_is_found_and_nothing_else() {
        for (i, k) in KNOWN.iter().enumerate() {
            assert_eq!(known(k.as_bytes()), Some(i), "{k}");
            assert_eq!(known(k.to_ascii_uppercase().as_bytes()), Some(i), "{k}");
        }
        for other in [
            "",
            ":",
            "user-agent",
            "x-grpc-web",
            ":status",
            "x-mesh-upstreaM2",
        ] {
            assert_eq!(known(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn known_names_read_like_a_scan() {
        let list = HeaderList::from_pairs([
            ("X-Other", "1"),
            (":Authority", "first.test"),
            ("origin", ""),
            (":authority", "second.test"),
            ("ORIGIN", "later"),
            ("x-mesh-upstream", "c"),
        ]);
        let bytes = list.to_pairs_bytes();
        let pairs = Pairs::parse(&bytes).unwrap();
        for name in KNOWN
            .iter()
            .copied()
            .chain(["x-other", "X-OTHER", "absent", ""])
        {
            let scanned = pairs.values(name).next();
            assert_eq!(pairs.first(name), scanned, "{name}");
            assert_eq!(pairs.first(name), list.first(name), "{name}");
        }
        assert_eq!(pairs.first(":AUTHORITY"), Some(&b"first.test"[..]));
        assert_eq!(pairs.first("origin"), Some(&b""[..]));
    }

    #[test]
    fn malformed_maps_are_refused_not_read_out_of_bounds() {
        let good = HeaderList::from_pairs([("a", "b")]).to_pairs_bytes();
        for cut in 1..good.len() {
            assert!(Pairs::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Pairs::parse(&huge).is_err());
    }
}
