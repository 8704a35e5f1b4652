//! Single byte ranges (RFC 9110 §14): what players send to seek inside a
//! segment or to probe a file. Several ranges in one request are answered
//! with the whole object (allowed: a server may ignore `Range`).

/// What a `Range` header asks of an object of a known length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send the whole object (200).
    Whole,
    /// Bytes `start..end` (end exclusive) of the object (206).
    Part {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// A range that starts past the end (416 with `Content-Range: bytes */LEN`).
    Unsatisfiable,
}

/// Parses `header` against an object of `len` bytes.
pub fn parse(header: &str, len: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') || spec.len() > 64 {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part {
                    start: len.saturating_sub(n),
                    end: len,
                }
            }
        }
        (false, Some(start), None) if last.is_empty() => {
            if start >= len {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part { start, end: len }
            }
        }
        (false, Some(start), Some(stop)) if stop >= start => {
            if start >= len {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part {
                    start,
                    end: stop.saturating_add(1).min(len),
                }
            }
        }
        _ => RangeRequest::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse("bytes=0-99", 1000), Part { start: 0, end: 100 });
        assert_eq!(
            parse("bytes=900-", 1000),
            Part {
                start: 900,
                end: 1000
            }
        );
        assert_eq!(
            parse("bytes=-100", 1000),
            Part {
                start: 900,
                end: 1000
            }
        );
        assert_eq!(
            parse("bytes=-5000", 1000),
            Part {
                start: 0,
                end: 1000
            }
        );
        assert_eq!(
            parse("bytes=990-5000", 1000),
            Part {
                start: 990,
                end: 1000
            }
        );
    }

    #[test]
    fn past_the_end_and_nonsense() {
        assert_eq!(parse("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=5000-6000", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=0-0", 0), Unsatisfiable);
        // Found by the fuzzer: a suffix range of an empty object.
        assert_eq!(parse("bytes=-5", 0), Unsatisfiable);
        for h in [
            "items=0-1",
            "bytes=5-1",
            "bytes=0-1,5-6",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(parse(h, 1000), Whole, "{h}");
        }
    }
}
