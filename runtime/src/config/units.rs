//! The value syntaxes of the file: byte sizes with units, socket addresses, durations, as
//! serde `with` modules.

pub(super) const KIB: u64 = 1 << 10;
pub(super) const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Why a text is not a byte size (serde shows it as the value's error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ByteSizeError {
    #[error(
        "invalid byte size {0:?}: expected a whole number with an optional unit, e.g. \"16MiB\""
    )]
    NoNumber(String),
    #[error("invalid byte size {0:?}: number too large")]
    NumberTooLarge(String),
    #[error(
        "invalid byte size {text:?}: unknown unit {unit:?}, expected one of B, KiB, MiB, GiB, TiB, kB, MB, GB, TB"
    )]
    Unit { text: String, unit: String },
    #[error("invalid byte size {0:?}: does not fit in 64 bits")]
    Overflow(String),
}

/// Parses `"16MiB"`, `"64MB"`, `"1GiB"`, `"4096"`. Binary units (KiB, MiB, GiB, TiB, also
/// Kubernetes' Ki/Mi/Gi/Ti) are powers of 1024; decimal ones (kB, MB, GB, TB) powers of 1000.
fn parse_byte_size(text: &str) -> Result<u64, ByteSizeError> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() {
        return Err(ByteSizeError::NoNumber(text.to_owned()));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| ByteSizeError::NumberTooLarge(text.to_owned()))?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "ki" => KIB,
        "mib" | "mi" => MIB,
        "gib" | "gi" => GIB,
        "tib" | "ti" => TIB,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" | "t" => 1_000_000_000_000,
        other => {
            return Err(ByteSizeError::Unit {
                text: text.to_owned(),
                unit: other.to_owned(),
            });
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| ByteSizeError::Overflow(text.to_owned()))
}

/// Byte sizes as an integer or a string with a unit; written back in the largest exact
/// binary unit so a dumped config reads like a hand-written one.
pub(super) mod byte_size {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    use super::{GIB, KIB, MIB, parse_byte_size};

    pub(crate) fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
        let bytes = *bytes;
        for (unit, size) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if bytes >= size && bytes.is_multiple_of(size) {
                return s.collect_str(&format_args!("{}{unit}", bytes / size));
            }
        }
        s.serialize_u64(bytes)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(ByteSizeVisitor)
    }

    struct ByteSizeVisitor;

    impl Visitor<'_> for ByteSizeVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a byte count such as 16777216 or "16MiB""#)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("invalid byte size {v}: negative")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            parse_byte_size(v).map_err(E::custom)
        }
    }
}

/// Socket addresses as `"IP:port"` strings. serde's own impl says only "invalid socket address
/// syntax"; this names the value and the expected shape (host names are not resolved).
pub(super) mod socket_addr {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::net::SocketAddr;

    pub(crate) fn serialize<S: Serializer>(addr: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(addr)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        d.deserialize_str(AddrVisitor)
    }

    struct AddrVisitor;

    impl Visitor<'_> for AddrVisitor {
        type Value = SocketAddr;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"an address such as "127.0.0.1:8080" or "[::1]:8080""#)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<SocketAddr, E> {
            v.parse().map_err(|_| {
                E::custom(format!(
                    r#"invalid address {v:?}: expected IP:port such as "127.0.0.1:8080" or "[::1]:8080" (host names are not resolved)"#
                ))
            })
        }
    }
}

/// Durations as human-readable strings ("10s", "500ms", "2m", "1h 30m").
pub(super) mod duration_text {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a duration string such as "10s", "500ms" or "2m""#)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v).map_err(|e| {
                E::custom(format!(
                    r#"invalid duration {v:?}: {e}; expected e.g. "10s", "500ms", "2m""#
                ))
            })
        }
    }
}
