use super::*;

/// A UTC instant written as RFC 3339 (`2026-03-27T08:00Z`), in Unix milliseconds. Only
/// parses UTC text: the local times behind each instant are worked out in the comments.
fn utc(instant: &str) -> i64 {
    instant.parse::<Timestamp>().unwrap().as_millisecond()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn schedule(timezone: &str, open: &[&str], closed: &[&str]) -> Schedule {
    Schedule::parse("test", timezone, &strings(open), &strings(closed)).unwrap()
}

fn parse_err(timezone: &str, open: &[&str], closed: &[&str]) -> String {
    Schedule::parse("test", timezone, &strings(open), &strings(closed)).unwrap_err()
}

/// Asserts open/closed at each (instant, expected) pair, naming the instant on failure.
fn assert_open(schedule: &Schedule, cases: &[(&str, bool)]) {
    for &(instant, expected) in cases {
        assert_eq!(
            schedule.is_open_at(utc(instant)),
            expected,
            "{schedule} at {instant}: expected {}",
            if expected { "open" } else { "closed" }
        );
    }
}

fn madrid_weekdays() -> Schedule {
    schedule("Europe/Madrid", &["mon-fri 09:00-18:00"], &[])
}

// Europe/Madrid is CET (UTC+1) in winter and CEST (UTC+2) in summer. In 2026 summer time
// runs from Sunday 29 March 01:00Z to Sunday 25 October 01:00Z (last Sundays).

#[test]
fn weekday_hours_open_at_the_start_and_close_at_the_exclusive_end() {
    // Wednesday 2026-06-17 is in CEST: 09:00 local is 07:00Z, 18:00 local is 16:00Z.
    assert_open(
        &madrid_weekdays(),
        &[
            ("2026-06-17T06:59:59.999Z", false),
            ("2026-06-17T07:00:00Z", true),
            ("2026-06-17T12:00:00Z", true),
            ("2026-06-17T15:59:59.999Z", true),
            ("2026-06-17T16:00:00Z", false),
            ("2026-06-17T22:00:00Z", false),
        ],
    );
}

#[test]
fn nine_local_stays_nine_local_across_the_march_dst_change() {
    // Friday 2026-03-27 is still CET: 09:00 local = 08:00Z, 08:59 local = 07:59Z.
    // Monday 2026-03-30 is CEST: 09:00 local = 07:00Z, 08:30 local = 06:30Z.
    // Sunday 2026-03-29 (the change) is not a weekday: closed all day.
    assert_open(
        &madrid_weekdays(),
        &[
            ("2026-03-27T07:59:00Z", false),
            ("2026-03-27T08:00:00Z", true),
            ("2026-03-27T16:59:00Z", true),  // 17:59 CET
            ("2026-03-27T17:00:00Z", false), // 18:00 CET
            ("2026-03-29T09:00:00Z", false),
            ("2026-03-30T06:30:00Z", false),
            ("2026-03-30T06:59:59Z", false),
            ("2026-03-30T07:00:00Z", true),
            ("2026-03-30T15:59:00Z", true),  // 17:59 CEST
            ("2026-03-30T16:00:00Z", false), // 18:00 CEST
        ],
    );
}

#[test]
fn nine_local_stays_nine_local_across_the_october_dst_change() {
    // Friday 2026-10-23 is still CEST: 09:00 local = 07:00Z.
    // Monday 2026-10-26 is CET: 09:00 local = 08:00Z, so 07:00Z is 08:00 local, closed,
    // although it was 09:00 local the Friday before.
    assert_open(
        &madrid_weekdays(),
        &[
            ("2026-10-23T06:59:00Z", false),
            ("2026-10-23T07:00:00Z", true),
            ("2026-10-23T16:00:00Z", false), // 18:00 CEST
            ("2026-10-26T07:00:00Z", false),
            ("2026-10-26T07:30:00Z", false),
            ("2026-10-26T08:00:00Z", true),
            ("2026-10-26T16:59:00Z", true),  // 17:59 CET
            ("2026-10-26T17:00:00Z", false), // 18:00 CET
        ],
    );
}

#[test]
fn saturday_window_is_open_only_on_saturday() {
    let s = schedule(
        "Europe/Madrid",
        &["mon-fri 09:00-18:00", "sat 10:00-14:00"],
        &[],
    );
    // Saturday 2026-06-20, CEST: 10:00 local = 08:00Z, 14:00 local = 12:00Z.
    // Sunday 2026-06-21 at 10:00 local = 08:00Z: no window.
    // Friday 2026-06-19 at 17:00 local = 15:00Z: the weekday window, not Saturday's.
    assert_open(
        &s,
        &[
            ("2026-06-20T07:59:00Z", false),
            ("2026-06-20T08:00:00Z", true),
            ("2026-06-20T11:59:59Z", true),
            ("2026-06-20T12:00:00Z", false),
            ("2026-06-20T15:00:00Z", false), // 17:00 Saturday: weekday hours don't apply
            ("2026-06-21T08:00:00Z", false),
            ("2026-06-19T15:00:00Z", true),
        ],
    );
}

#[test]
fn overnight_window_runs_from_its_start_day_into_the_next_morning() {
    let s = schedule("Europe/Madrid", &["fri 22:00-02:00"], &[]);
    // Friday 2026-06-19, CEST: 22:00 local = 20:00Z; Saturday 02:00 local = 00:00Z on
    // 2026-06-20, so Saturday 01:59 local is 2026-06-19T23:59Z.
    // Thursday 2026-06-18 22:00 local = 20:00Z and Saturday 2026-06-20 22:00 local =
    // 20:00Z must be closed: the window starts on Fridays only. Friday 01:00 local
    // (2026-06-18T23:00Z) is closed too: Thursday night has no window.
    assert_open(
        &s,
        &[
            ("2026-06-19T19:59:00Z", false),
            ("2026-06-19T20:00:00Z", true),
            ("2026-06-19T21:59:59Z", true), // Friday 23:59:59 local
            ("2026-06-19T22:00:00Z", true), // Saturday 00:00 local
            ("2026-06-19T23:59:59Z", true),
            ("2026-06-20T00:00:00Z", false), // Saturday 02:00 local: end is exclusive
            ("2026-06-18T20:00:00Z", false),
            ("2026-06-18T23:00:00Z", false),
            ("2026-06-20T20:00:00Z", false),
        ],
    );
}

#[test]
fn sunday_overnight_window_wraps_into_monday() {
    let s = schedule("Europe/Madrid", &["sun 23:00-01:30"], &[]);
    // Sunday 2026-06-21 23:00 CEST = 21:00Z; Monday 2026-06-22 01:30 CEST = 23:30Z on
    // the 21st. Monday 23:00 local (2026-06-22T21:00Z) has no window.
    assert_open(
        &s,
        &[
            ("2026-06-21T20:59:00Z", false),
            ("2026-06-21T21:00:00Z", true),
            ("2026-06-21T23:29:00Z", true), // Monday 01:29 local
            ("2026-06-21T23:30:00Z", false),
            ("2026-06-22T21:00:00Z", false),
        ],
    );
}

#[test]
fn a_window_ending_at_midnight_closes_at_midnight() {
    // `22:00-00:00` and `22:00-24:00` mean the same: until midnight, nothing after.
    // Monday 2026-06-22, CEST: 22:00 local = 20:00Z, midnight = 22:00Z.
    for open in ["mon 22:00-00:00", "mon 22:00-24:00"] {
        let s = schedule("Europe/Madrid", &[open], &[]);
        assert_open(
            &s,
            &[
                ("2026-06-22T19:59:59Z", false),
                ("2026-06-22T20:00:00Z", true),
                ("2026-06-22T21:59:59.999Z", true),
                ("2026-06-22T22:00:00Z", false),
                ("2026-06-22T23:00:00Z", false),
            ],
        );
    }
}

#[test]
fn daily_all_day_is_always_open_even_on_dst_days() {
    let s = schedule("Europe/Madrid", &["daily 00:00-24:00"], &[]);
    assert_open(
        &s,
        &[
            ("2026-03-29T00:59:59Z", true),
            ("2026-03-29T01:00:00Z", true),
            ("2026-10-25T00:30:00Z", true),
            ("2026-10-25T01:30:00Z", true),
            ("2026-06-21T22:00:00Z", true), // Monday midnight local
            ("2026-01-04T12:00:00Z", true),
        ],
    );
}

#[test]
fn closed_date_is_closed_all_day_while_the_day_before_is_open() {
    let s = schedule("Europe/Madrid", &["mon-fri 09:00-18:00"], &["2026-12-25"]);
    // December is CET: 10:00 local = 09:00Z. Thursday 24th open, Friday 25th (closed
    // date) closed, Monday 28th open again.
    assert_open(
        &s,
        &[
            ("2026-12-24T09:00:00Z", true),
            ("2026-12-25T08:00:00Z", false), // 09:00 local
            ("2026-12-25T09:00:00Z", false),
            ("2026-12-25T16:59:00Z", false), // 17:59 local
            ("2026-12-28T09:00:00Z", true),
        ],
    );
}

#[test]
fn closed_date_cuts_overnight_windows_on_both_sides_of_midnight() {
    let s = schedule("Europe/Madrid", &["thu-fri 22:00-02:00"], &["2026-12-25"]);
    // December is CET (UTC+1). Thursday 24th 22:00 local = 21:00Z: open. Friday 25th
    // 01:00 local = 00:00Z on the 25th: the tail of Thursday's window, on a closed date.
    // Friday 25th 22:00 local = 21:00Z: closed date. Saturday 26th 01:00 local =
    // 00:00Z on the 26th: the tail of a window that would have started on the closed
    // Friday, so closed. A week earlier the same tail (Saturday 19th) is open.
    assert_open(
        &s,
        &[
            ("2026-12-24T21:00:00Z", true),
            ("2026-12-24T22:59:59Z", true),  // Thursday 23:59:59 local
            ("2026-12-24T23:00:00Z", false), // Friday 00:00 local
            ("2026-12-25T00:00:00Z", false),
            ("2026-12-25T21:00:00Z", false),
            ("2026-12-26T00:00:00Z", false),
            ("2026-12-19T00:00:00Z", true),
        ],
    );
}

#[test]
fn new_york_hours_follow_us_dst_dates_not_european_ones() {
    let s = schedule("America/New_York", &["mon-fri 09:00-17:00"], &[]);
    // New York is EST (UTC-5) until Sunday 2026-03-08 07:00Z, then EDT (UTC-4) until
    // Sunday 2026-11-01 06:00Z. Friday 2026-03-06 (EST): 09:00 local = 14:00Z. Monday
    // 2026-03-09 (EDT, while Madrid is still CET): 09:00 local = 13:00Z. Monday
    // 2026-11-02 (EST again): 09:00 local = 14:00Z, so 13:00Z is 08:00 local.
    assert_open(
        &s,
        &[
            ("2026-03-06T13:59:00Z", false),
            ("2026-03-06T14:00:00Z", true),
            ("2026-03-06T21:59:00Z", true),  // 16:59 EST
            ("2026-03-06T22:00:00Z", false), // 17:00 EST
            ("2026-03-09T12:59:00Z", false),
            ("2026-03-09T13:00:00Z", true),
            ("2026-03-09T20:59:00Z", true),  // 16:59 EDT
            ("2026-03-09T21:00:00Z", false), // 17:00 EDT
            ("2026-11-02T13:00:00Z", false),
            ("2026-11-02T14:00:00Z", true),
            // Monday 2026-03-09 00:00Z is still Sunday 20:00 EDT in New York: closed.
            ("2026-03-09T00:00:00Z", false),
        ],
    );
}

#[test]
fn local_times_skipped_by_spring_forward_never_happen() {
    let s = schedule("Europe/Madrid", &["sun 02:30-04:00"], &[]);
    // On 2026-03-29 clocks jump from 02:00 CET to 03:00 CEST at 01:00Z: 02:30 local
    // never happens, so the window opens at 03:00 CEST (01:00Z) and closes at 04:00
    // CEST (02:00Z). 00:59:59Z is 01:59:59 CET.
    assert_open(
        &s,
        &[
            ("2026-03-29T00:59:59Z", false),
            ("2026-03-29T01:00:00Z", true),
            ("2026-03-29T01:59:59Z", true),
            ("2026-03-29T02:00:00Z", false),
        ],
    );
}

#[test]
fn local_times_repeated_by_fall_back_are_open_both_times() {
    let s = schedule("Europe/Madrid", &["sun 02:00-02:30"], &[]);
    // On 2026-10-25 clocks go back from 03:00 CEST to 02:00 CET at 01:00Z, so 02:00-03:00
    // local happens twice: 00:00Z-01:00Z (CEST) and 01:00Z-02:00Z (CET).
    assert_open(
        &s,
        &[
            ("2026-10-24T23:59:59Z", false), // 01:59:59 CEST
            ("2026-10-25T00:00:00Z", true),  // 02:00 CEST
            ("2026-10-25T00:29:59Z", true),
            ("2026-10-25T00:30:00Z", false), // 02:30 CEST
            ("2026-10-25T01:00:00Z", true),  // 02:00 CET, again
            ("2026-10-25T01:29:59Z", true),
            ("2026-10-25T01:30:00Z", false), // 02:30 CET
        ],
    );
}

#[test]
fn day_lists_ranges_and_wrapping_ranges_select_the_right_weekdays() {
    // Monday 2026-06-15 .. Sunday 2026-06-21, all CEST: 12:00 local = 10:00Z.
    let week = [
        "2026-06-15T10:00:00Z", // mon
        "2026-06-16T10:00:00Z", // tue
        "2026-06-17T10:00:00Z", // wed
        "2026-06-18T10:00:00Z", // thu
        "2026-06-19T10:00:00Z", // fri
        "2026-06-20T10:00:00Z", // sat
        "2026-06-21T10:00:00Z", // sun
    ];
    let cases: [(&str, [bool; 7]); 6] = [
        (
            "mon,wed,fri-sat",
            [true, false, true, false, true, true, false],
        ),
        ("fri-mon", [true, false, false, false, true, true, true]),
        ("MON-Fri", [true, true, true, true, true, false, false]),
        (
            "Tue, Thursday",
            [false, true, false, true, false, false, false],
        ),
        ("daily", [true; 7]),
        ("sun-sun", [false, false, false, false, false, false, true]),
    ];
    for (days, expected) in cases {
        let s = schedule("Europe/Madrid", &[&format!("{days} 11:00-13:00")], &[]);
        for (instant, open) in week.iter().zip(expected) {
            assert_eq!(s.is_open_at(utc(instant)), open, "`{days}` at {instant}");
        }
    }
}

#[test]
fn display_is_a_normalised_one_line_summary() {
    let s = Schedule::parse(
        "support-hours",
        "europe/madrid",
        &strings(&["Mon-FRI 09:00-18:00", "sat 10:00-14:00", "fri 22:00-24:00"]),
        &strings(&["2027-01-01", "2026-12-25", "2026-12-25"]),
    )
    .unwrap();
    assert_eq!(s.name(), "support-hours");
    assert_eq!(
        s.to_string(),
        "support-hours (Europe/Madrid): mon-fri 09:00-18:00, sat 10:00-14:00, \
         fri 22:00-24:00; closed 2026-12-25, 2027-01-01"
    );
    let plain = schedule("America/New_York", &["Tue, thursday 08:30-12:00"], &[]);
    assert_eq!(
        plain.to_string(),
        "test (America/New_York): tue,thu 08:30-12:00"
    );
}

#[test]
fn instants_beyond_the_supported_range_are_closed_not_a_panic() {
    let s = schedule("UTC", &["daily 00:00-24:00"], &[]);
    assert!(s.is_open_at(0));
    assert!(!s.is_open_at(i64::MAX));
    assert!(!s.is_open_at(i64::MIN));
}

#[test]
fn the_bundled_zone_database_has_the_zones_and_their_rules() {
    // Production has no /usr/share/zoneinfo: the bundled copy must answer alone.
    let bundled = TimeZoneDatabase::bundled();
    for zone in ["Europe/Madrid", "America/New_York"] {
        assert!(bundled.get(zone).is_ok(), "{zone} is bundled");
    }
    let s = Schedule::parse_with_db(
        "bundled",
        "Europe/Madrid",
        &strings(&["mon-fri 09:00-18:00"]),
        &[],
        &bundled,
    )
    .unwrap();
    // Same instants as the March DST test: 09:00 CET, then 08:30 and 09:00 CEST.
    assert!(s.is_open_at(utc("2026-03-27T08:00:00Z")));
    assert!(!s.is_open_at(utc("2026-03-30T06:30:00Z")));
    assert!(s.is_open_at(utc("2026-03-30T07:00:00Z")));
}

#[test]
fn unknown_time_zones_are_rejected_by_name() {
    for tz in ["Europe/Madird", "", "CET+1", "Etc/Unknown", "+01:00"] {
        assert_eq!(
            parse_err(tz, &["mon 09:00-10:00"], &[]),
            format!("timezone `{tz}` is not an IANA time zone")
        );
    }
}

#[test]
fn an_empty_open_list_is_rejected() {
    let err = parse_err("Europe/Madrid", &[], &[]);
    assert!(err.starts_with("open must list at least one"), "{err}");
}

#[test]
fn an_empty_name_is_rejected() {
    let err = Schedule::parse(" ", "UTC", &strings(&["daily 09:00-10:00"]), &[]).unwrap_err();
    assert_eq!(err, "name must not be empty");
}

#[test]
fn every_bad_window_is_rejected_with_its_index_entry_and_reason() {
    let cases = [
        ("sat 10:00-25:00", "time `25:00` is not HH:MM"),
        ("mon 9:00-18:00", "time `9:00` is not HH:MM"),
        ("mon 09:60-10:00", "time `09:60` is not HH:MM"),
        ("mon 09:00-24:01", "time `24:01` is not HH:MM"),
        ("mon 0a:00-10:00", "time `0a:00` is not HH:MM"),
        ("mon 09:00-", "time `` is not HH:MM"),
        (
            "mon 09:00",
            "expected `HH:MM-HH:MM` after the days, found `09:00`",
        ),
        ("mon-fri", "expected `DAYS HH:MM-HH:MM`"),
        ("", "expected `DAYS HH:MM-HH:MM`"),
        ("mon-fir 09:00-18:00", "unknown day `fir`"),
        ("weekdays 09:00-18:00", "unknown day `weekdays`"),
        ("mon fri 09:00-18:00", "unknown day `mon fri`"),
        ("mon,,fri 09:00-18:00", "empty day in `mon,,fri`"),
        ("daily,sat 09:00-18:00", "`daily` cannot be combined"),
        ("mon 09:00-09:00", "start and end are both 09:00"),
        ("mon 24:00-02:00", "cannot start at 24:00"),
    ];
    for (entry, reason) in cases {
        // The bad entry is second, so the index must be 1, not 0.
        let err = parse_err("UTC", &["daily 09:00-10:00", entry], &[]);
        let prefix = format!("open[1] `{entry}`: ");
        assert!(err.starts_with(&prefix), "`{err}` starts with `{prefix}`");
        assert!(err.contains(reason), "`{err}` mentions `{reason}`");
    }
}

#[test]
fn every_bad_closed_date_is_rejected_with_its_index_entry_and_reason() {
    let cases = [
        ("2026-02-30", "not a calendar date"),
        ("2026-13-01", "not a calendar date"),
        ("2026-00-10", "not a calendar date"),
        ("2025-02-29", "not a calendar date"),
        ("26-12-25", "expected a date as YYYY-MM-DD"),
        ("2026/12/25", "expected a date as YYYY-MM-DD"),
        ("2026-12-25T00:00", "expected a date as YYYY-MM-DD"),
        ("2026-1-05", "expected a date as YYYY-MM-DD"),
        ("christmas", "expected a date as YYYY-MM-DD"),
    ];
    for (date, reason) in cases {
        let err = parse_err("UTC", &["daily 09:00-10:00"], &["2026-12-24", date]);
        assert_eq!(err, format!("closed_dates[1] `{date}`: {reason}"));
    }
    // A leap day is a real date.
    assert!(Schedule::parse(
        "t",
        "UTC",
        &strings(&["daily 09:00-10:00"]),
        &strings(&["2028-02-29"])
    )
    .is_ok());
}
