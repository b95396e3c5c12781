//! The small formats the contract names: semver and ISO 8601 dates.

fn numeric_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

fn dotted_identifiers(s: &str, prerelease: bool) -> bool {
    s.split('.').all(|id| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && (!prerelease || !id.bytes().all(|b| b.is_ascii_digit()) || numeric_identifier(id))
    })
}

/// Whether `v` is a semantic version (`MAJOR.MINOR.PATCH[-pre][+build]`).
pub(crate) fn is_semver(v: &str) -> bool {
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| numeric_identifier(p))
        && pre.is_none_or(|p| dotted_identifiers(p, true))
        && build.is_none_or(|b| dotted_identifiers(b, false))
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Whether `d` is an ISO 8601 calendar date `YYYY-MM-DD` that exists.
pub(crate) fn is_iso_date(d: &str) -> bool {
    let mut parts = d.split('-');
    let (Some(y), Some(m), Some(day), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Some(y), Some(m), Some(day)) = (digits(y, 4), digits(m, 2), digits(day, 2)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

fn is_time(t: &str) -> bool {
    let (clock, zone) = if let Some(c) = t.strip_suffix(['Z', 'z']) {
        (c, None)
    } else if let Some(i) = t.rfind(['+', '-']) {
        (&t[..i], Some(&t[i + 1..]))
    } else {
        return false;
    };
    if let Some(z) = zone {
        let Some((h, m)) = z.split_once(':') else {
            return false;
        };
        if !matches!((digits(h, 2), digits(m, 2)), (Some(h), Some(m)) if h < 24 && m < 60) {
            return false;
        }
    }
    let (hms, fraction) = match clock.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (clock, None),
    };
    if fraction.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    let mut parts = hms.split(':');
    let (Some(h), Some(m), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    matches!((digits(h, 2), digits(m, 2), digits(s, 2)), (Some(h), Some(m), Some(s)) if h < 24 && m < 60 && s <= 60)
}

/// Whether `t` is an ISO 8601 date-time with a zone (RFC 3339 profile).
pub(crate) fn is_iso_datetime(t: &str) -> bool {
    match t.split_once(['T', 't']) {
        Some((date, time)) => is_iso_date(date) && is_time(time),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver() {
        for ok in [
            "1.0.0",
            "0.1.0",
            "10.20.30",
            "1.0.0-alpha.1",
            "1.0.0+build.5",
            "1.0.0-rc.1+sha.abc",
        ] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in [
            "1.0", "v1.0.0", "1.0.0.0", "01.0.0", "1.0.0-", "1.0.0-01", "1..0", "", "latest",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
    }

    #[test]
    fn dates() {
        for ok in ["2027-01-01", "2028-02-29", "2026-12-31"] {
            assert!(is_iso_date(ok), "{ok}");
        }
        for bad in [
            "2027-02-29",
            "2027-13-01",
            "27-01-01",
            "2027/01/01",
            "next spring",
            "2027-1-1",
        ] {
            assert!(!is_iso_date(bad), "{bad}");
        }
        for ok in [
            "2026-11-25T13:00:00Z",
            "2026-11-25T13:00:00.123+01:00",
            "2026-11-25t13:00:00z",
        ] {
            assert!(is_iso_datetime(ok), "{ok}");
        }
        for bad in [
            "2026-11-25",
            "2026-11-25T25:00:00Z",
            "2026-11-25T13:00:00",
            "yesterday",
        ] {
            assert!(!is_iso_datetime(bad), "{bad}");
        }
    }
}
