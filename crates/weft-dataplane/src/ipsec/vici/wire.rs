//! The VICI wire format (strongSwan's `src/libcharon/plugins/vici/README.md`):
//! packets framed by a 32-bit big-endian length, each a type byte, an
//! optional name, and a message of sections, key/values and lists.
//!
//! Pure: bytes in, values out, every length checked (a charon that sends
//! garbage gets an error back, never a panic).

/// A message: ordered elements, as charon sends them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message(pub Vec<(String, Value)>);

/// One element's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Section(Message),
}

impl Message {
    pub fn new() -> Message {
        Message::default()
    }

    /// Adds a key/value (builder style).
    pub fn kv(mut self, key: &str, value: impl AsRef<[u8]>) -> Message {
        self.0
            .push((key.to_owned(), Value::Str(value.as_ref().to_vec())));
        self
    }

    /// Adds a list.
    pub fn list<I, S>(mut self, key: &str, items: I) -> Message
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let items = items.into_iter().map(|s| s.as_ref().to_vec()).collect();
        self.0.push((key.to_owned(), Value::List(items)));
        self
    }

    /// Adds a section.
    pub fn section(mut self, key: &str, inner: Message) -> Message {
        self.0.push((key.to_owned(), Value::Section(inner)));
        self
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A key's value as text.
    pub fn str(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::Str(v) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        }
    }

    /// A list's items as text (empty when absent).
    pub fn strs(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Value::List(items)) => items
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A sub-section.
    pub fn sub(&self, key: &str) -> Option<&Message> {
        match self.get(key)? {
            Value::Section(m) => Some(m),
            _ => None,
        }
    }

    /// The sections of this message, with their names.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Message)> {
        self.0.iter().filter_map(|(k, v)| match v {
            Value::Section(m) => Some((k.as_str(), m)),
            _ => None,
        })
    }
}

const SECTION_START: u8 = 1;
const SECTION_END: u8 = 2;
const KEY_VALUE: u8 = 3;
const LIST_START: u8 = 4;
const LIST_ITEM: u8 = 5;
const LIST_END: u8 = 6;

/// The packet types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    CmdRequest(String, Message),
    CmdResponse(Message),
    CmdUnknown,
    EventRegister(String),
    EventUnregister(String),
    EventConfirm,
    EventUnknown,
    Event(String, Message),
}

/// Why bytes could not be read or written as VICI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated VICI message")]
    Truncated,
    #[error("unknown VICI element or packet type {0}")]
    UnknownType(u8),
    #[error("unbalanced VICI section or list")]
    Unbalanced,
    #[error("a VICI name or value is too long ({0} bytes)")]
    TooLong(usize),
}

fn put_name(out: &mut Vec<u8>, name: &str) -> Result<(), WireError> {
    let len = u8::try_from(name.len()).map_err(|_| WireError::TooLong(name.len()))?;
    out.push(len);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

fn put_value(out: &mut Vec<u8>, v: &[u8]) -> Result<(), WireError> {
    let len = u16::try_from(v.len()).map_err(|_| WireError::TooLong(v.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(v);
    Ok(())
}

fn put_message(out: &mut Vec<u8>, m: &Message) -> Result<(), WireError> {
    for (k, v) in &m.0 {
        match v {
            Value::Str(s) => {
                out.push(KEY_VALUE);
                put_name(out, k)?;
                put_value(out, s)?;
            }
            Value::List(items) => {
                out.push(LIST_START);
                put_name(out, k)?;
                for i in items {
                    out.push(LIST_ITEM);
                    put_value(out, i)?;
                }
                out.push(LIST_END);
            }
            Value::Section(inner) => {
                out.push(SECTION_START);
                put_name(out, k)?;
                put_message(out, inner)?;
                out.push(SECTION_END);
            }
        }
    }
    Ok(())
}

/// The packet's bytes, length prefix included.
pub fn encode(p: &Packet) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::new();
    match p {
        Packet::CmdRequest(name, m) => {
            body.push(0);
            put_name(&mut body, name)?;
            put_message(&mut body, m)?;
        }
        Packet::CmdResponse(m) => {
            body.push(1);
            put_message(&mut body, m)?;
        }
        Packet::CmdUnknown => body.push(2),
        Packet::EventRegister(name) => {
            body.push(3);
            put_name(&mut body, name)?;
        }
        Packet::EventUnregister(name) => {
            body.push(4);
            put_name(&mut body, name)?;
        }
        Packet::EventConfirm => body.push(5),
        Packet::EventUnknown => body.push(6),
        Packet::Event(name, m) => {
            body.push(7);
            put_name(&mut body, name)?;
            put_message(&mut body, m)?;
        }
    }
    let len = u32::try_from(body.len()).map_err(|_| WireError::TooLong(body.len()))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend(body);
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, WireError> {
        let (&b, rest) = self.0.split_first().ok_or(WireError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated);
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(a)
    }

    fn name(&mut self) -> Result<String, WireError> {
        let n = usize::from(self.byte()?);
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    fn value(&mut self) -> Result<Vec<u8>, WireError> {
        let hi = self.byte()?;
        let lo = self.byte()?;
        Ok(self
            .take(usize::from(u16::from_be_bytes([hi, lo])))?
            .to_vec())
    }

    /// Elements up to a section end (`nested`) or the end of input.
    fn message(&mut self, nested: bool) -> Result<Message, WireError> {
        let mut m = Message::new();
        loop {
            let Some(&kind) = self.0.first() else {
                return if nested {
                    Err(WireError::Unbalanced)
                } else {
                    Ok(m)
                };
            };
            self.0 = &self.0[1..];
            match kind {
                SECTION_START => {
                    let name = self.name()?;
                    let inner = self.message(true)?;
                    m.0.push((name, Value::Section(inner)));
                }
                SECTION_END if nested => return Ok(m),
                KEY_VALUE => {
                    let name = self.name()?;
                    let v = self.value()?;
                    m.0.push((name, Value::Str(v)));
                }
                LIST_START => {
                    let name = self.name()?;
                    let mut items = Vec::new();
                    loop {
                        match self.byte()? {
                            LIST_ITEM => items.push(self.value()?),
                            LIST_END => break,
                            other => return Err(WireError::UnknownType(other)),
                        }
                    }
                    m.0.push((name, Value::List(items)));
                }
                SECTION_END | LIST_ITEM | LIST_END => return Err(WireError::Unbalanced),
                other => return Err(WireError::UnknownType(other)),
            }
        }
    }
}

/// Reads one packet's body (without the length prefix).
pub fn decode(body: &[u8]) -> Result<Packet, WireError> {
    let mut r = Reader(body);
    Ok(match r.byte()? {
        0 => {
            let name = r.name()?;
            Packet::CmdRequest(name, r.message(false)?)
        }
        1 => Packet::CmdResponse(r.message(false)?),
        2 => Packet::CmdUnknown,
        3 => Packet::EventRegister(r.name()?),
        4 => Packet::EventUnregister(r.name()?),
        5 => Packet::EventConfirm,
        6 => Packet::EventUnknown,
        7 => {
            let name = r.name()?;
            Packet::Event(name, r.message(false)?)
        }
        other => return Err(WireError::UnknownType(other)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Message {
        Message::new().section(
            "conn",
            Message::new()
                .list("local_addrs", ["192.0.2.1"])
                .kv("version", "2")
                .section("local", Message::new().kv("auth", "psk"))
                .list("empty", Vec::<&str>::new()),
        )
    }

    #[test]
    fn every_packet_type_round_trips() {
        for p in [
            Packet::CmdRequest("load-conn".into(), sample()),
            Packet::CmdResponse(Message::new().kv("success", "yes")),
            Packet::CmdUnknown,
            Packet::EventRegister("list-sa".into()),
            Packet::EventUnregister("list-sa".into()),
            Packet::EventConfirm,
            Packet::EventUnknown,
            Packet::Event("list-sa".into(), sample()),
        ] {
            let bytes = encode(&p).unwrap();
            let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            assert_eq!(len, bytes.len() - 4);
            assert_eq!(decode(&bytes[4..]).unwrap(), p);
        }
    }

    /// The bytes of the README's example, so the format is charon's and
    /// not only this module's.
    #[test]
    fn bytes_are_the_documented_ones() {
        let m = Message::new()
            .kv("key1", "value1")
            .section("section1", Message::new().list("list1", ["item1"]));
        let bytes = encode(&Packet::CmdRequest("x".into(), m)).unwrap();
        let mut want = vec![0u8, 1, b'x'];
        want.extend([3, 4]);
        want.extend(b"key1");
        want.extend([0, 6]);
        want.extend(b"value1");
        want.extend([1, 8]);
        want.extend(b"section1");
        want.extend([4, 5]);
        want.extend(b"list1");
        want.extend([5, 0, 5]);
        want.extend(b"item1");
        want.extend([6, 2]);
        assert_eq!(&bytes[4..], &want[..]);
    }

    #[test]
    fn accessors_read_what_was_built() {
        let m = sample();
        let conn = m.sub("conn").unwrap();
        assert_eq!(conn.str("version").as_deref(), Some("2"));
        assert_eq!(conn.strs("local_addrs"), vec!["192.0.2.1"]);
        assert_eq!(
            conn.sub("local").unwrap().str("auth").as_deref(),
            Some("psk")
        );
        assert_eq!(m.sections().count(), 1);
        assert_eq!(conn.str("nope"), None);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let bytes = encode(&Packet::Event("list-sa".into(), sample())).unwrap();
        for cut in 5..bytes.len() - 1 {
            // Every truncation either errors or reads a shorter message.
            let _ = decode(&bytes[4..cut]);
        }
        assert_eq!(decode(&[]), Err(WireError::Truncated));
        assert_eq!(decode(&[9]), Err(WireError::UnknownType(9)));
        assert_eq!(decode(&[1, 2]), Err(WireError::Unbalanced));
        assert_eq!(decode(&[1, 1, 1, b'a']), Err(WireError::Unbalanced));
        assert_eq!(decode(&[1, 4, 1, b'a', 9]), Err(WireError::UnknownType(9)));
        assert!(encode(&Packet::EventRegister("x".repeat(300))).is_err());
    }
}
