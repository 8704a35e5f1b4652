//! AMF0, the encoding of RTMP commands and metadata (Adobe "AMF 0 File Format").
//!
//! The decoder reads untrusted bytes: nesting depth and element counts are bounded
//! and every length is checked, so a hostile message is an error, never a panic or
//! an allocation the peer chose.

use bytes::{Buf, BufMut, BytesMut};

/// Objects nested deeper than this are refused (a stack-exhaustion guard).
pub const MAX_DEPTH: usize = 16;
/// More properties or array elements than this in one value are refused.
pub const MAX_ELEMENTS: usize = 4096;

/// An AMF0 value. Objects keep their property order, which some peers depend on.
#[derive(Clone, Debug, PartialEq)]
pub enum Amf0Value {
    /// All numbers are IEEE doubles.
    Number(f64),
    /// A boolean.
    Boolean(bool),
    /// A string (short or long form on the wire).
    String(String),
    /// An anonymous object.
    Object(Vec<(String, Amf0Value)>),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// An associative array (what `onMetaData` usually is).
    EcmaArray(Vec<(String, Amf0Value)>),
    /// A dense array.
    StrictArray(Vec<Amf0Value>),
    /// Milliseconds since the epoch (the time-zone field is ignored, as the spec says).
    Date(f64),
}

impl Amf0Value {
    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number inside, if this is a number.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The properties, if this is an object or an ECMA array.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => Some(p),
            _ => None,
        }
    }

    /// A property by name, if this is an object or an ECMA array.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .find_map(|(k, v)| (k == key).then_some(v))
    }
}

/// Bytes that are not valid AMF0 (or that exceed a bound).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AmfError {
    /// The value ends before its declared length.
    #[error("AMF0 truncated at byte {0}")]
    Truncated(usize),
    /// A type marker Ferry does not read (AMF0 references, XML, typed objects, AMF3 switch).
    #[error("AMF0 type marker {marker:#04x} at byte {at} is not supported")]
    UnsupportedMarker {
        /// The marker byte.
        marker: u8,
        /// Its offset.
        at: usize,
    },
    /// Objects nested deeper than [`MAX_DEPTH`].
    #[error("AMF0 nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// More than [`MAX_ELEMENTS`] entries in one value.
    #[error("AMF0 value with more than {MAX_ELEMENTS} elements")]
    TooManyElements,
    /// A string that is not UTF-8.
    #[error("AMF0 string at byte {0} is not UTF-8")]
    BadString(usize),
}

/// Decodes every value in `data` (a command is a sequence of values).
pub fn decode_all(data: &[u8]) -> Result<Vec<Amf0Value>, AmfError> {
    let mut r = Reader { data, at: 0 };
    let mut out = Vec::new();
    while r.at < data.len() {
        if out.len() >= MAX_ELEMENTS {
            return Err(AmfError::TooManyElements);
        }
        out.push(r.value(0)?);
    }
    Ok(out)
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], AmfError> {
        let end = self.at.checked_add(n).ok_or(AmfError::Truncated(self.at))?;
        let s = self
            .data
            .get(self.at..end)
            .ok_or(AmfError::Truncated(self.data.len()))?;
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, AmfError> {
        let mut b = self.take(2)?;
        Ok(b.get_u16())
    }

    fn u32(&mut self) -> Result<u32, AmfError> {
        let mut b = self.take(4)?;
        Ok(b.get_u32())
    }

    fn f64(&mut self) -> Result<f64, AmfError> {
        let mut b = self.take(8)?;
        Ok(b.get_f64())
    }

    fn string_of(&mut self, len: usize) -> Result<String, AmfError> {
        let at = self.at;
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| AmfError::BadString(at))
    }

    fn short_string(&mut self) -> Result<String, AmfError> {
        let len = usize::from(self.u16()?);
        self.string_of(len)
    }

    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>, AmfError> {
        let mut props = Vec::new();
        loop {
            let key = self.short_string()?;
            if key.is_empty() && self.data.get(self.at) == Some(&0x09) {
                self.at += 1;
                return Ok(props);
            }
            if props.len() >= MAX_ELEMENTS {
                return Err(AmfError::TooManyElements);
            }
            let value = self.value(depth + 1)?;
            props.push((key, value));
        }
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, AmfError> {
        if depth > MAX_DEPTH {
            return Err(AmfError::TooDeep);
        }
        let at = self.at;
        let marker = self.u8()?;
        Ok(match marker {
            0x00 => Amf0Value::Number(self.f64()?),
            0x01 => Amf0Value::Boolean(self.u8()? != 0),
            0x02 => Amf0Value::String(self.short_string()?),
            0x03 => Amf0Value::Object(self.properties(depth)?),
            0x05 => Amf0Value::Null,
            0x06 => Amf0Value::Undefined,
            0x08 => {
                // The count is a hint only; real encoders get it wrong, the end marker decides.
                let _count = self.u32()?;
                Amf0Value::EcmaArray(self.properties(depth)?)
            }
            0x0a => {
                let count = self.u32()? as usize;
                if count > MAX_ELEMENTS {
                    return Err(AmfError::TooManyElements);
                }
                let items = (0..count)
                    .map(|_| self.value(depth + 1))
                    .collect::<Result<_, _>>()?;
                Amf0Value::StrictArray(items)
            }
            0x0b => {
                let ms = self.f64()?;
                let _tz = self.u16()?;
                Amf0Value::Date(ms)
            }
            0x0c => {
                let len = self.u32()? as usize;
                Amf0Value::String(self.string_of(len)?)
            }
            marker => return Err(AmfError::UnsupportedMarker { marker, at }),
        })
    }
}

/// Appends `value` to `out`.
pub fn encode(value: &Amf0Value, out: &mut BytesMut) {
    match value {
        Amf0Value::Number(n) => {
            out.put_u8(0x00);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(0x01);
            out.put_u8(u8::from(*b));
        }
        Amf0Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.put_u8(0x02);
                out.put_u16(len);
                out.put_slice(s.as_bytes());
            }
            Err(_) => {
                out.put_u8(0x0c);
                out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
                out.put_slice(&s.as_bytes()[..s.len().min(u32::MAX as usize)]);
            }
        },
        Amf0Value::Object(props) => {
            out.put_u8(0x03);
            encode_properties(props, out);
        }
        Amf0Value::Null => out.put_u8(0x05),
        Amf0Value::Undefined => out.put_u8(0x06),
        Amf0Value::EcmaArray(props) => {
            out.put_u8(0x08);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            encode_properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.put_u8(0x0a);
            out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
            for item in items {
                encode(item, out);
            }
        }
        Amf0Value::Date(ms) => {
            out.put_u8(0x0b);
            out.put_f64(*ms);
            out.put_u16(0);
        }
    }
}

fn encode_properties(props: &[(String, Amf0Value)], out: &mut BytesMut) {
    for (key, value) in props {
        // Keys longer than a short string can hold are cut; no real peer sends them.
        let key = &key.as_bytes()[..key.len().min(usize::from(u16::MAX))];
        out.put_u16(key.len() as u16);
        out.put_slice(key);
        encode(value, out);
    }
    out.put_slice(&[0, 0, 0x09]);
}

/// Encodes a sequence of values (a command or a data message body).
pub fn encode_all(values: &[Amf0Value]) -> BytesMut {
    let mut out = BytesMut::new();
    for v in values {
        encode(v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(props: &[(&str, Amf0Value)]) -> Amf0Value {
        Amf0Value::Object(
            props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn round_trips_a_connect_command() {
        let values = vec![
            Amf0Value::String("connect".into()),
            Amf0Value::Number(1.0),
            obj(&[
                ("app", Amf0Value::String("live".into())),
                ("fpad", Amf0Value::Boolean(false)),
                ("audioCodecs", Amf0Value::Number(3191.0)),
                ("nested", obj(&[("x", Amf0Value::Null)])),
            ]),
            Amf0Value::EcmaArray(vec![("w".into(), Amf0Value::Number(1280.0))]),
            Amf0Value::StrictArray(vec![Amf0Value::Undefined, Amf0Value::Date(5.0)]),
        ];
        let bytes = encode_all(&values);
        assert_eq!(decode_all(&bytes), Ok(values));
    }

    #[test]
    fn long_string_round_trips() {
        let v = vec![Amf0Value::String("x".repeat(70_000))];
        assert_eq!(decode_all(&encode_all(&v)), Ok(v));
    }

    #[test]
    fn truncations_are_errors() {
        let bytes = encode_all(&[
            Amf0Value::String("publish".into()),
            obj(&[("a", Amf0Value::Number(1.0))]),
        ]);
        // Every cut except the one between the two values leaves a partial value.
        let between = 3 + "publish".len();
        for n in (1..bytes.len()).filter(|&n| n != between) {
            assert!(decode_all(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut v = Amf0Value::Null;
        for _ in 0..(MAX_DEPTH + 2) {
            v = obj(&[("a", v)]);
        }
        assert_eq!(decode_all(&encode_all(&[v])), Err(AmfError::TooDeep));
    }

    #[test]
    fn huge_declared_array_is_refused_without_allocating() {
        let bytes = [0x0a, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode_all(&bytes), Err(AmfError::TooManyElements));
    }

    #[test]
    fn unknown_marker_is_an_error() {
        assert!(matches!(
            decode_all(&[0x11, 0x00]),
            Err(AmfError::UnsupportedMarker { marker: 0x11, .. })
        ));
    }
}
