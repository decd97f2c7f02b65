//! Quantities written in `cortex.yaml`: [`Cpu`], [`Mem`], [`Duration`] and [`Surge`].
//!
//! Each parses from the text a user writes (`FromStr`, errors are lower-case sentences) and
//! serialises to a canonical text that parses back to the same value, so specs stored as JSON
//! round-trip:
//!
//! | type | written | serialised |
//! |---|---|---|
//! | [`Cpu`] | `200m`, `0.2`, `1`, `1.5` | `"200m"`, `"1"` (whole cores), `"1500m"` |
//! | [`Mem`] | `200M`, `200Mi`, `1G`, `1.5Gi`, `500k`, `1048576` | the text as written |
//! | [`Duration`] | `10s`, `1m`, `1m30s`, `1h` | `"10s"`, `"1m"`, `"1m30s"`, `"1h"` (largest units first, zero parts left out; `"0s"`) |
//! | [`Surge`] | `25%`, `3` | `"25%"`, `3` (a JSON number) |
//!
//! Deserialising also accepts numbers where YAML users write them: a [`Cpu`] from `1` or `0.5`
//! (cores), a [`Mem`] from `1048576` (bytes), a [`Duration`] from `60` (seconds).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A quantity that does not parse; the message is a lower-case sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuantityError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, QuantityError> {
    Err(QuantityError(message.into()))
}

/// Splits `12.345` into its digits (`12345`) and the number of fraction digits (3).
/// Refuses signs, exponents and anything that is not `digits[.digits]`.
fn decimal(text: &str) -> Option<(u128, u32)> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    if int.len() + frac.len() > 30 {
        return None;
    }
    let digits: u128 = format!("{int}{frac}").parse().ok()?;
    Some((digits, u32::try_from(frac.len()).ok()?))
}

// ---------------------------------------------------------------------------------------------

/// CPU in millicores; written `200m`, `0.2` or `1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpu(pub u64);

impl Cpu {
    pub fn millicores(self) -> u64 {
        self.0
    }
}

impl FromStr for Cpu {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Cpu, QuantityError> {
        let text = text.trim();
        let expected = || {
            err(format!(
                "expected a cpu quantity like 200m, 0.5 or 2, got \"{text}\""
            ))
        };
        if text.starts_with('-') {
            return err(format!("must not be negative, got \"{text}\""));
        }
        if let Some(millis) = text.strip_suffix('m') {
            let Some((digits, scale)) = decimal(millis) else {
                return expected();
            };
            if scale > 0 && !digits.is_multiple_of(10u128.pow(scale)) {
                return err(format!(
                    "cannot be finer than 1m (a thousandth of a cpu), got \"{text}\""
                ));
            }
            let millis = digits / 10u128.pow(scale);
            return u64::try_from(millis).map(Cpu).or_else(|_| expected());
        }
        let Some((digits, scale)) = decimal(text) else {
            return expected();
        };
        // cores × 1000 = digits × 1000 / 10^scale
        let scaled = digits * 1000;
        let divisor = 10u128.pow(scale);
        if !scaled.is_multiple_of(divisor) {
            return err(format!(
                "cannot be finer than 0.001 (1m, a thousandth of a cpu), got \"{text}\""
            ));
        }
        u64::try_from(scaled / divisor)
            .map(Cpu)
            .or_else(|_| expected())
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

impl Serialize for Cpu {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cpu {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cpu, D::Error> {
        d.deserialize_any(TextOrNumber("a cpu quantity like \"200m\""))
            .and_then(|text| text.parse().map_err(de::Error::custom))
    }
}

// ---------------------------------------------------------------------------------------------

/// Memory in bytes, with the text the user wrote (`200M`, `1Gi`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mem {
    pub bytes: u64,
    /// As written (trimmed); what it serialises and displays as.
    pub text: String,
}

impl Mem {
    /// A quantity of exactly `bytes`, written as a plain number.
    pub fn from_bytes(bytes: u64) -> Mem {
        Mem {
            bytes,
            text: bytes.to_string(),
        }
    }
}

/// Suffixes Kubernetes understands, with their multipliers.
const MEM_UNITS: &[(&str, u128)] = &[
    ("", 1),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
];

impl FromStr for Mem {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Mem, QuantityError> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let expected = || {
            err(format!(
                "expected a memory quantity like 200Mi, 1G or 1048576 (bytes), got \"{text}\""
            ))
        };
        if text.starts_with('-') {
            return err(format!("must not be negative, got \"{text}\""));
        }
        let Some((digits, scale)) = decimal(number) else {
            return expected();
        };
        let Some((_, multiplier)) = MEM_UNITS.iter().find(|(u, _)| *u == unit) else {
            return match mem_unit_hint(unit) {
                Some((decimal_unit, binary_unit)) if unit == "m" => err(format!(
                    "\"{text}\" would mean {number} thousandths of a byte; write \
                     {number}{decimal_unit} (megabytes) or {number}{binary_unit} (mebibytes)"
                )),
                Some((decimal_unit, binary_unit)) => err(format!(
                    "unknown unit \"{unit}\"; write {number}{decimal_unit} (powers of 1000) or \
                     {number}{binary_unit} (powers of 1024)"
                )),
                None => expected(),
            };
        };
        let Some(scaled) = digits.checked_mul(*multiplier) else {
            return err(format!("\"{text}\" is too large"));
        };
        // Round a fraction of a byte up, as Kubernetes does.
        let bytes = scaled.div_ceil(10u128.pow(scale));
        match u64::try_from(bytes) {
            Ok(bytes) => Ok(Mem {
                bytes,
                text: text.to_string(),
            }),
            Err(_) => err(format!("\"{text}\" is too large")),
        }
    }
}

/// For a unit people write but Kubernetes does not (`MB`, `gb`, `K`, `m`): the decimal and
/// binary units they probably mean.
fn mem_unit_hint(unit: &str) -> Option<(&'static str, &'static str)> {
    let lower = unit.to_ascii_lowercase();
    let stem = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .or_else(|| lower.strip_suffix('i'))
        .unwrap_or(&lower);
    Some(match stem {
        "k" => ("k", "Ki"),
        "m" => ("M", "Mi"),
        "g" => ("G", "Gi"),
        "t" => ("T", "Ti"),
        "p" => ("P", "Pi"),
        "e" => ("E", "Ei"),
        _ => return None,
    })
}

impl fmt::Display for Mem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Mem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Mem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mem, D::Error> {
        d.deserialize_any(TextOrNumber("a memory quantity like \"200Mi\""))
            .and_then(|text| text.parse().map_err(de::Error::custom))
    }
}

// ---------------------------------------------------------------------------------------------

/// A duration in whole seconds; written `60s`, `5m`, `1h`, `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub u64);

impl Duration {
    /// The longest duration written: 100 years. A clock plus any duration stays far from
    /// overflowing.
    pub const MAX_SECONDS: u64 = 100 * 365 * 24 * 3600;

    pub fn seconds(self) -> u64 {
        self.0
    }

    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl FromStr for Duration {
    type Err = QuantityError;

    /// A sequence of `<whole number><unit>` with units `h`, `m`, `s` (`1h30m`, `90s`), or `0`.
    fn from_str(text: &str) -> Result<Duration, QuantityError> {
        let text = text.trim();
        if text == "0" {
            return Ok(Duration(0));
        }
        let expected = || {
            err(format!(
                "expected a duration like 30s, 5m or 1h30m, got \"{text}\""
            ))
        };
        if text.is_empty() {
            return expected();
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return err(format!(
                "\"{text}\" has no unit; write {text}s for seconds or {text}m for minutes"
            ));
        }
        if text.starts_with('-') {
            return err(format!("must not be negative, got \"{text}\""));
        }
        let mut total: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits_end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (digits, after) = rest.split_at(digits_end);
            let unit_end = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, next) = after.split_at(unit_end);
            if digits.is_empty() {
                return if unit.starts_with('.') || next.starts_with('.') {
                    err(format!(
                        "use whole numbers, e.g. 1m30s rather than 1.5m, got \"{text}\""
                    ))
                } else {
                    expected()
                };
            }
            let seconds_per_unit = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "ms" | "us" | "µs" | "ns" => {
                    return err(format!(
                        "is counted in whole seconds; use s, m or h, got \"{text}\""
                    ))
                }
                "" if next.starts_with('.') => {
                    return err(format!(
                        "use whole numbers, e.g. 1m30s rather than 1.5m, got \"{text}\""
                    ))
                }
                "" => return err(format!("\"{text}\" ends without a unit; add s, m or h")),
                _ => return expected(),
            };
            let Some(seconds) = digits
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(seconds_per_unit))
                .and_then(|s| total.checked_add(s))
                .filter(|s| *s <= Duration::MAX_SECONDS)
            else {
                return err(format!(
                    "\"{text}\" is too long; at most {}h (100 years)",
                    Duration::MAX_SECONDS / 3600
                ));
            };
            total = seconds;
            rest = next;
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    /// Largest units first, zero parts left out: `1h`, `1m30s`, `45s`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 / 60 % 60, self.0 % 60);
        if self.0 == 0 {
            return f.write_str("0s");
        }
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = d.deserialize_any(TextOrNumber("a duration like \"60s\""))?;
        if let Ok(seconds) = text.parse::<u64>() {
            return Ok(Duration(seconds));
        }
        text.parse().map_err(de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------

/// `max_surge` / `max_unavailable`: a count of replicas or a percentage of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Surge {
    Count(u32),
    /// 0..=100.
    Percent(u32),
}

impl Surge {
    pub fn is_zero(self) -> bool {
        matches!(self, Surge::Count(0) | Surge::Percent(0))
    }

    /// How many replicas this is out of `replicas`; percentages round up (as Kubernetes does
    /// for max_surge).
    pub fn of(self, replicas: u32) -> u32 {
        match self {
            Surge::Count(n) => n,
            Surge::Percent(p) => {
                let n = (u64::from(replicas) * u64::from(p)).div_ceil(100);
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        }
    }
}

impl FromStr for Surge {
    type Err = QuantityError;

    /// `25%` (0..=100) or a whole number of replicas.
    fn from_str(text: &str) -> Result<Surge, QuantityError> {
        let text = text.trim();
        let expected = || {
            err(format!(
                "expected a whole number of replicas or a percentage like 25%, got \"{text}\""
            ))
        };
        if text.starts_with('-') {
            return err(format!("must not be negative, got \"{text}\""));
        }
        let (digits, percent) = match text.strip_suffix('%') {
            Some(digits) => (digits.trim_end(), true),
            None => (text, false),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return expected();
        }
        let Ok(n) = digits.parse::<u32>() else {
            return err(format!("\"{text}\" is too large"));
        };
        if !percent {
            return Ok(Surge::Count(n));
        }
        if n > 100 {
            return err(format!("a percentage must be at most 100%, got \"{text}\""));
        }
        Ok(Surge::Percent(n))
    }
}

impl fmt::Display for Surge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Surge::Count(n) => write!(f, "{n}"),
            Surge::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Surge {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Surge::Count(n) => s.serialize_u32(*n),
            Surge::Percent(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Surge {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Surge, D::Error> {
        d.deserialize_any(TextOrNumber("a count or a percentage like \"25%\""))
            .and_then(|text| text.parse().map_err(de::Error::custom))
    }
}

// ---------------------------------------------------------------------------------------------

/// Deserialises a string or a number into text, for the quantities' `FromStr`.
struct TextOrNumber(&'static str);

impl Visitor<'_> for TextOrNumber {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        // Display of f64 is the shortest text that reads back the same (`0.2`, not `0.2000…1`).
        Ok(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(text: &str) -> Result<u64, String> {
        text.parse::<Cpu>().map(|c| c.0).map_err(|e| e.0)
    }

    fn mem(text: &str) -> Result<u64, String> {
        text.parse::<Mem>().map(|m| m.bytes).map_err(|e| e.0)
    }

    fn secs(text: &str) -> Result<u64, String> {
        text.parse::<Duration>().map(|d| d.0).map_err(|e| e.0)
    }

    #[test]
    fn cpu_parses_millicores_and_cores() {
        assert_eq!(cpu("200m"), Ok(200));
        assert_eq!(cpu("0.2"), Ok(200));
        assert_eq!(cpu(".5"), Ok(500));
        assert_eq!(cpu("1"), Ok(1000));
        assert_eq!(cpu("1.5"), Ok(1500));
        assert_eq!(cpu("2.000"), Ok(2000));
        assert_eq!(cpu("0.0010"), Ok(1));
        assert_eq!(cpu(" 250m "), Ok(250));
    }

    #[test]
    fn cpu_refuses_nonsense() {
        assert_eq!(
            cpu("one"),
            Err("expected a cpu quantity like 200m, 0.5 or 2, got \"one\"".into())
        );
        assert!(cpu("0.0005").unwrap_err().contains("finer than 0.001"));
        assert!(cpu("0.5m").unwrap_err().contains("finer than 1m"));
        assert!(cpu("-1").unwrap_err().contains("negative"));
        assert!(cpu("").is_err());
        assert!(cpu("m").is_err());
        assert!(cpu("1e3").is_err());
        assert!(cpu("99999999999999999999999").is_err());
    }

    #[test]
    fn cpu_displays_canonically() {
        assert_eq!(Cpu(200).to_string(), "200m");
        assert_eq!(Cpu(1000).to_string(), "1");
        assert_eq!(Cpu(1500).to_string(), "1500m");
        assert_eq!(Cpu(0).to_string(), "0");
    }

    #[test]
    fn mem_parses_kubernetes_quantities() {
        assert_eq!(mem("200M"), Ok(200_000_000));
        assert_eq!(mem("200Mi"), Ok(200 * 1024 * 1024));
        assert_eq!(mem("1G"), Ok(1_000_000_000));
        assert_eq!(mem("1Gi"), Ok(1 << 30));
        assert_eq!(mem("500k"), Ok(500_000));
        assert_eq!(mem("1.5Gi"), Ok(3 << 29));
        assert_eq!(mem("1048576"), Ok(1_048_576));
        assert_eq!(mem("0.5"), Ok(1));
        assert_eq!(mem("8Ei"), Ok(8 << 60));
    }

    #[test]
    fn mem_explains_common_mistakes() {
        assert_eq!(
            mem("200m"),
            Err(
                "\"200m\" would mean 200 thousandths of a byte; write 200M (megabytes) or 200Mi \
                 (mebibytes)"
                    .into()
            )
        );
        assert_eq!(
            mem("2GB"),
            Err("unknown unit \"GB\"; write 2G (powers of 1000) or 2Gi (powers of 1024)".into())
        );
        assert!(mem("512K").unwrap_err().contains("512k"));
        assert!(mem("lots")
            .unwrap_err()
            .starts_with("expected a memory quantity"));
        assert!(mem("Mi").is_err());
        assert!(mem("-1Gi").unwrap_err().contains("negative"));
        assert!(mem("100Ei").unwrap_err().contains("too large"));
        assert!(mem("99999999999999999999999999999999999999Ei").is_err());
    }

    #[test]
    fn mem_keeps_the_text() {
        let m: Mem = " 1Gi".parse().unwrap();
        assert_eq!(m.text, "1Gi");
        assert_eq!(m.to_string(), "1Gi");
        assert_eq!(Mem::from_bytes(42).text, "42");
    }

    #[test]
    fn durations_parse_units() {
        assert_eq!(secs("10s"), Ok(10));
        assert_eq!(secs("1m"), Ok(60));
        assert_eq!(secs("5m"), Ok(300));
        assert_eq!(secs("1h"), Ok(3600));
        assert_eq!(secs("1m30s"), Ok(90));
        assert_eq!(secs("1h2m3s"), Ok(3723));
        assert_eq!(secs("0"), Ok(0));
        assert_eq!(secs("0s"), Ok(0));
    }

    #[test]
    fn durations_explain_mistakes() {
        assert_eq!(
            secs("60"),
            Err("\"60\" has no unit; write 60s for seconds or 60m for minutes".into())
        );
        assert!(secs("500ms").unwrap_err().contains("whole seconds"));
        assert!(secs("1.5m").unwrap_err().contains("whole numbers"));
        assert!(secs("1m30").unwrap_err().contains("without a unit"));
        assert!(secs("soon").unwrap_err().starts_with("expected a duration"));
        assert!(secs("").is_err());
        assert!(secs("-5s").unwrap_err().contains("negative"));
        assert!(secs("99999999999999999999h")
            .unwrap_err()
            .contains("too long"));
        assert!(secs("1d").is_err());
    }

    #[test]
    fn durations_display_canonically() {
        assert_eq!(Duration(0).to_string(), "0s");
        assert_eq!(Duration(45).to_string(), "45s");
        assert_eq!(Duration(60).to_string(), "1m");
        assert_eq!(Duration(90).to_string(), "1m30s");
        assert_eq!(Duration(300).to_string(), "5m");
        assert_eq!(Duration(3600).to_string(), "1h");
        assert_eq!(Duration(3723).to_string(), "1h2m3s");
        for s in [0, 1, 59, 60, 61, 3599, 3600, 3601, 86400, 90061] {
            assert_eq!(
                Duration(s).to_string().parse::<Duration>().unwrap(),
                Duration(s)
            );
        }
    }

    #[test]
    fn surges_parse_counts_and_percentages() {
        assert_eq!("25%".parse::<Surge>(), Ok(Surge::Percent(25)));
        assert_eq!("3".parse::<Surge>(), Ok(Surge::Count(3)));
        assert_eq!("0%".parse::<Surge>(), Ok(Surge::Percent(0)));
        assert!("101%"
            .parse::<Surge>()
            .unwrap_err()
            .0
            .contains("at most 100%"));
        assert!("a lot".parse::<Surge>().is_err());
        assert!("%".parse::<Surge>().is_err());
        assert!("-1".parse::<Surge>().unwrap_err().0.contains("negative"));
        assert!(Surge::Count(0).is_zero() && Surge::Percent(0).is_zero());
        assert_eq!(Surge::Percent(25).of(10), 3);
        assert_eq!(Surge::Count(2).of(10), 2);
    }

    #[test]
    fn json_round_trips() {
        let cpu = Cpu(200);
        assert_eq!(serde_json::to_string(&cpu).unwrap(), "\"200m\"");
        assert_eq!(serde_json::from_str::<Cpu>("\"200m\"").unwrap(), cpu);
        assert_eq!(serde_json::from_str::<Cpu>("0.2").unwrap(), cpu);
        assert_eq!(serde_json::from_str::<Cpu>("2").unwrap(), Cpu(2000));

        let mem: Mem = "1.5Gi".parse().unwrap();
        assert_eq!(serde_json::to_string(&mem).unwrap(), "\"1.5Gi\"");
        assert_eq!(serde_json::from_str::<Mem>("\"1.5Gi\"").unwrap(), mem);
        assert_eq!(
            serde_json::from_str::<Mem>("1024").unwrap(),
            Mem::from_bytes(1024)
        );

        let d = Duration(90);
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1m30s\"");
        assert_eq!(serde_json::from_str::<Duration>("\"1m30s\"").unwrap(), d);
        assert_eq!(serde_json::from_str::<Duration>("90").unwrap(), d);

        assert_eq!(
            serde_json::to_string(&Surge::Percent(25)).unwrap(),
            "\"25%\""
        );
        assert_eq!(serde_json::to_string(&Surge::Count(2)).unwrap(), "2");
        assert_eq!(
            serde_json::from_str::<Surge>("\"25%\"").unwrap(),
            Surge::Percent(25)
        );
        assert_eq!(serde_json::from_str::<Surge>("2").unwrap(), Surge::Count(2));

        assert!(serde_json::from_str::<Cpu>("\"lots\"").is_err());
        assert!(serde_json::from_str::<Mem>("true").is_err());
    }
}
