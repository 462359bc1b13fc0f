//! Calendar arithmetic on days and microseconds since the Unix epoch, in the
//! proleptic Gregorian calendar (what Postgres, MySQL, Avro and Parquet use),
//! without a date library: civil dates from day counts and back, and the ISO
//! texts used in partition paths and debugging output.
//!
//! Years outside 1..=9999 are written with a sign and at least four digits
//! (`+10000-01-01`, `-0001-12-31`); Postgres `±infinity` (the extreme values)
//! as `infinity` / `-infinity`.

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm, valid over the whole i64 range we use.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn year_text(year: i64) -> String {
    if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else if year < 0 {
        format!("-{:04}", -year)
    } else {
        format!("+{year}")
    }
}

/// `YYYY-MM-DD`.
pub fn date_text(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        _ => {
            let (y, m, d) = civil_from_days(i64::from(days));
            format!("{}-{m:02}-{d:02}", year_text(y))
        }
    }
}

/// `HH:MM:SS.ffffff` of microseconds since midnight (24:00:00 allowed), or
/// of a signed duration (`-838:59:59.000000`).
pub fn time_text(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let secs = m / 1_000_000;
    format!(
        "{sign}{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        m % 1_000_000
    )
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` of microseconds since the epoch.
pub fn timestamp_text(micros: i64) -> String {
    match micros {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        _ => {
            let days = micros.div_euclid(86_400_000_000);
            let of_day = micros.rem_euclid(86_400_000_000);
            let (y, m, d) = civil_from_days(days);
            format!("{}-{m:02}-{d:02}T{}", year_text(y), time_text(of_day))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        for days in [
            -1_000_000_000i64,
            -719_528,
            -1,
            0,
            59,
            60,
            11_016,
            2_932_896,
            1_000_000_000,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{days}");
        }
    }

    #[test]
    fn texts() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(-719_528), "0000-01-01");
        assert_eq!(date_text(-719_529), "-0001-12-31");
        assert_eq!(date_text(2_932_897), "+10000-01-01");
        assert_eq!(date_text(i32::MAX), "infinity");
        assert_eq!(time_text(86_400_000_000), "24:00:00.000000");
        assert_eq!(time_text(-3_020_399_000_000), "-838:59:59.000000");
        assert_eq!(
            timestamp_text(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456"
        );
        assert_eq!(timestamp_text(-1), "1969-12-31T23:59:59.999999");
        assert_eq!(timestamp_text(i64::MIN), "-infinity");
    }
}
