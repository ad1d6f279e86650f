//! KV-cache memory admission. A session is admitted only if the cache it may grow to
//! (its prompt, its new tokens and one draft block, capped at the model's context)
//! fits the per-session budget and, with every open session's, the global one. A
//! session's cache never allocates past its reservation, so an admitted session cannot
//! run the verifier out of memory later.
//!
//! Worked example: the tiny target takes 2 KiB per token (2 · 4 layers · 2 kv heads ·
//! 32 dims · 4 bytes). A session with a 100-token prompt asking for 64 new tokens with
//! blocks of up to 32 drafts reserves (100 + 64 + 33) · 2 KiB = 394 KiB.

use tandem_protocol::WireError;

/// How much KV-cache memory the verifier promises; zero means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvBudget {
    /// All sessions together, bytes.
    pub total_bytes: u64,
    /// One session, bytes.
    pub session_bytes: u64,
}

impl KvBudget {
    /// Admits a session needing `tokens` of context at `per_token` bytes each, with
    /// `reserved` bytes already promised to others. Returns its reservation, or
    /// `RESOURCE_EXHAUSTED` saying which budget it exceeds and by how much.
    pub fn admit(&self, tokens: usize, per_token: usize, reserved: u64) -> Result<u64, WireError> {
        let per_token = per_token as u64;
        let bytes = tokens as u64 * per_token;
        if self.session_bytes > 0 && bytes > self.session_bytes {
            let fits = self.session_bytes / per_token.max(1);
            return Err(WireError::exhausted(format!(
                "this session may need {tokens} tokens of KV cache ({}), over the per-session \
                 budget of {} ({fits} tokens): ask for fewer new tokens or a shorter prompt",
                human(bytes),
                human(self.session_bytes)
            )));
        }
        if self.total_bytes > 0 && reserved + bytes > self.total_bytes {
            return Err(WireError::exhausted(format!(
                "the verifier's KV cache budget of {} is taken ({} promised to open sessions; \
                 this one needs {}): retry when sessions close",
                human(self.total_bytes),
                human(reserved),
                human(bytes)
            )));
        }
        Ok(bytes)
    }
}

/// Bytes in the largest binary unit that keeps them ≥ 1 ("394.0 KiB").
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Parses a byte size: a plain number, or one with a unit (`512MiB`, `4 GiB`, `64k`,
/// `2G`; k/M/G/T and KiB/MiB/GiB/TiB are all powers of 1024, KB/MB/GB/TB powers of
/// 1000).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 512MiB, 4GiB or a number of bytes)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use KiB, MiB, GiB)"
            ));
        }
    };
    Ok((value * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    #[test]
    fn unlimited_admits_anything() {
        let b = KvBudget::default();
        assert_eq!(
            b.admit(1_000_000, 2048, u64::MAX / 2).unwrap(),
            2048 * 1_000_000
        );
    }

    #[test]
    fn per_session_budget_is_checked_alone() {
        let b = KvBudget {
            total_bytes: 0,
            session_bytes: 100 * KIB,
        };
        assert_eq!(b.admit(50, 2048, 0).unwrap(), 100 * KIB);
        let e = b.admit(51, 2048, 0).unwrap_err();
        assert_eq!(e.code, tonic::Code::ResourceExhausted);
        assert!(
            e.message
                .contains("per-session budget of 100.0 KiB (50 tokens)"),
            "{e}"
        );
    }

    #[test]
    fn global_budget_counts_what_others_hold() {
        let b = KvBudget {
            total_bytes: 300 * KIB,
            session_bytes: 0,
        };
        assert!(b.admit(50, 2048, 200 * KIB).is_ok()); // exactly full
        let e = b.admit(51, 2048, 200 * KIB).unwrap_err();
        assert_eq!(e.code, tonic::Code::ResourceExhausted);
        assert!(e.message.contains("200.0 KiB promised"), "{e}");
    }

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("4 GiB").unwrap(), 4 << 30);
        assert_eq!(parse_bytes("64k").unwrap(), 64 << 10);
        assert_eq!(parse_bytes("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("2GB").unwrap(), 2_000_000_000);
        assert!(parse_bytes("lots").unwrap_err().contains("not a size"));
        assert!(
            parse_bytes("3 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert_eq!(human(394 * KIB), "394.0 KiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
    }
}
