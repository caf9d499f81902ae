use super::*;
use proptest::prelude::*;
use Granularity::{Day, Hour, Month, Week, Year};

fn ts(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).expect("test timestamp").timestamp_millis()
}

fn b(g: Granularity, s: &str) -> Bucket {
    Bucket::parse(g, s).expect("test bucket")
}

#[test]
fn feeds_follows_the_rollup_lineage_transitively() {
    let fed: Vec<(Granularity, Granularity)> = Granularity::ALL
        .into_iter()
        .flat_map(|f| Granularity::ALL.into_iter().map(move |c| (f, c)))
        .filter(|&(f, c)| f.feeds(c))
        .collect();
    assert_eq!(
        fed,
        [(Hour, Day), (Hour, Week), (Hour, Month), (Hour, Year), (Day, Week), (Day, Month), (Day, Year), (Month, Year)]
    );
}

/// `(fine, coarse)` pairs where every `fine` bucket lies inside one `coarse` bucket.
/// Weeks nest in nothing but weeks.
fn nested_pair() -> impl Strategy<Value = (Granularity, Granularity)> {
    let mut pairs = Vec::new();
    for fine in Granularity::ALL {
        for coarse in Granularity::ALL {
            let nests =
                fine == coarse || fine == Hour || (fine == Day && coarse != Hour) || (fine == Month && coarse == Year);
            if nests {
                pairs.push((fine, coarse));
            }
        }
    }
    prop::sample::select(pairs)
}

/// Reference minimal cover size: shortest path over every hour boundary of the range,
/// trying every granularity's aligned bucket at each position.
fn brute_min_cover(from: i64, to: i64) -> usize {
    let n = ((to - from) / HOUR_MS) as usize;
    let mut best = vec![usize::MAX; n + 1];
    best[0] = 0;
    for i in 0..n {
        let t = from + i as i64 * HOUR_MS;
        for g in Granularity::ALL {
            if Bucket::is_aligned(g, t) {
                let end = Bucket { granularity: g, start_ms: t }.end_ms();
                if end <= to {
                    let j = ((end - from) / HOUR_MS) as usize;
                    best[j] = best[j].min(best[i] + 1);
                }
            }
        }
    }
    best[n]
}

fn assert_exact_cover(from: i64, to: i64, pieces: &[Bucket]) {
    let mut at = from;
    for p in pieces {
        assert!(Bucket::is_aligned(p.granularity, p.start_ms), "{p:?}");
        assert_eq!(p.start_ms, at, "gap or overlap at {p}");
        at = p.end_ms();
    }
    assert_eq!(at, to);
}

const Y1900: i64 = -2_208_988_800_000;
const Y2200: i64 = 7_258_118_400_000;
const WIDE: i64 = 1_000_000_000_000_000; // ±31,700 years

fn any_granularity() -> impl Strategy<Value = Granularity> {
    prop::sample::select(Granularity::ALL.to_vec())
}

/// Small hour-aligned ranges around 2025–2027, biased towards midnight ends so that
/// weeks, months and years actually come into play.
fn small_range() -> impl Strategy<Value = (i64, i64)> {
    let day0 = days_from_civil(2025, 6, 1);
    let hour = prop_oneof![Just(0i64), 0i64..24];
    let len = prop_oneof![4 => 0i64..120, 1 => 0i64..800];
    (0i64..600, hour.clone(), len, hour).prop_filter_map("empty", move |(d, h0, len, h1)| {
        let from = (day0 + d) * DAY_MS + h0 * HOUR_MS;
        let to = (day0 + d + len) * DAY_MS + h1 * HOUR_MS;
        (from < to).then_some((from, to))
    })
}

proptest! {
    #[test]
    fn hour_of_week_agrees_with_chrono(t in Y1900..Y2200) {
        use chrono::{Datelike, Timelike};
        let c = chrono::DateTime::from_timestamp_millis(t).unwrap();
        let want = c.weekday().num_days_from_monday() * 24 + c.hour();
        prop_assert_eq!(hour_of_week(t), want as usize);
    }

    #[test]
    fn containing_is_aligned_and_contains(g in any_granularity(), t in -WIDE..WIDE) {
        let c = Bucket::containing(g, t);
        prop_assert!(Bucket::is_aligned(g, c.start_ms));
        prop_assert!(c.start_ms <= t && t < c.end_ms());
        prop_assert!(c.contains(t));
        prop_assert_eq!(Bucket::aligned(g, c.start_ms), Some(c));
        prop_assert_eq!(is_aligned(g, t), c.start_ms == t);
    }

    #[test]
    fn end_is_next_start_and_prev_inverts_next(g in any_granularity(), t in -WIDE..WIDE) {
        let c = Bucket::containing(g, t);
        prop_assert_eq!(c.end_ms(), c.next().start_ms);
        prop_assert_eq!(c.next().prev(), c);
        prop_assert_eq!(c.prev().next(), c);
        prop_assert_eq!(c.prev().end_ms(), c.start_ms);
        prop_assert_eq!(c.duration_ms(), c.end_ms() - c.start_ms);
    }

    #[test]
    fn children_partition_the_bucket(g in any_granularity(), t in -WIDE..WIDE) {
        let c = Bucket::containing(g, t);
        let kids = c.children();
        if g == Hour {
            prop_assert!(kids.is_empty());
        } else {
            prop_assert!(!kids.is_empty());
            assert_exact_cover(c.start_ms, c.end_ms(), &kids);
            for k in &kids {
                prop_assert_eq!(Some(k.granularity), g.child());
                prop_assert!(k.rollup_parents().contains(&c), "{} does not feed {}", k, c);
            }
        }
    }

    #[test]
    fn parent_of_containing_is_containing((fine, coarse) in nested_pair(), t in -WIDE..WIDE) {
        prop_assert_eq!(
            Bucket::containing(fine, t).parent(coarse),
            Bucket::containing(coarse, t)
        );
    }

    #[test]
    fn rollup_parents_and_ancestors_contain_the_bucket(g in any_granularity(), t in -WIDE..WIDE) {
        let c = Bucket::containing(g, t);
        for p in c.rollup_parents().into_iter().chain(c.ancestors()) {
            prop_assert!(p.granularity > g);
            prop_assert!(p.start_ms <= c.start_ms && c.end_ms() <= p.end_ms(), "{} in {}", c, p);
        }
    }

    #[test]
    fn display_parse_round_trip(g in any_granularity(), t in -WIDE..WIDE) {
        let c = Bucket::containing(g, t);
        let label = c.to_string();
        prop_assert_eq!(Bucket::parse(g, &label), Ok(c));
        prop_assert_eq!(label.parse::<Bucket>(), Ok(c));
    }

    #[test]
    fn rfc3339_start_parses_and_misaligned_is_rejected(g in any_granularity(), t in Y1900..Y2200) {
        let c = Bucket::containing(g, t);
        prop_assert_eq!(Bucket::parse(g, &fmt_ts(c.start_ms)), Ok(c));
        if t != c.start_ms {
            let is_not_aligned = matches!(
                Bucket::parse(g, &fmt_ts(t)),
                Err(ParseBucketError::NotAligned { .. })
            );
            prop_assert!(is_not_aligned);
        }
    }

    #[test]
    fn decompose_is_an_exact_sorted_partition(
        a in (Y1900 / HOUR_MS)..(Y2200 / HOUR_MS),
        len in prop_oneof![1i64..2_000, 1i64..2_000_000],
    ) {
        let (from, to) = (a * HOUR_MS, (a + len) * HOUR_MS);
        let pieces = decompose(from, to).expect("valid range");
        assert_exact_cover(from, to, &pieces);
    }

    #[test]
    fn decompose_is_minimal((from, to) in small_range()) {
        let pieces = decompose(from, to).expect("valid range");
        assert_exact_cover(from, to, &pieces);
        prop_assert_eq!(pieces.len(), brute_min_cover(from, to), "{:?}", pieces);
    }

    #[test]
    fn decompose_rejects_misaligned_ends(a in -WIDE..WIDE, len in 1i64..1_000_000_000) {
        let to = a.saturating_add(len);
        let r = decompose(a, to);
        if a.rem_euclid(HOUR_MS) != 0 {
            prop_assert_eq!(r, Err(RangeError::StartNotAligned { from_ms: a }));
        } else if to.rem_euclid(HOUR_MS) != 0 {
            prop_assert_eq!(r, Err(RangeError::EndNotAligned { to_ms: to }));
        } else {
            prop_assert!(r.is_ok());
        }
    }
}

#[test]
fn granularity_names() {
    for g in Granularity::ALL {
        assert_eq!(g.as_str().parse::<Granularity>(), Ok(g));
        assert_eq!(g.to_string(), g.as_str());
        assert_eq!(serde_json::to_string(&g).expect("serialize"), format!("\"{g}\""));
    }
    assert_eq!("WeEk".parse::<Granularity>(), Ok(Week));
    let err = "fortnight".parse::<Granularity>().unwrap_err();
    assert_eq!(err.to_string(), r#"unknown granularity "fortnight" (expected hour, day, week, month or year)"#);
    let back: Granularity = serde_json::from_str("\"month\"").expect("deserialize");
    assert_eq!(back, Month);
}

#[test]
fn labels() {
    let t = ts("2026-11-28T07:45:12.345Z");
    let labels: Vec<String> = Granularity::ALL.iter().map(|&g| Bucket::containing(g, t).to_string()).collect();
    assert_eq!(labels, ["2026-11-28T07", "2026-11-28", "2026-W48", "2026-11", "2026"]);
}

#[test]
fn week_2026_w53_straddles_into_2027() {
    let monday = ts("2026-12-28T00:00:00Z");
    let w = Bucket::containing(Week, ts("2027-01-03T23:59:59Z"));
    assert_eq!(w.start_ms, monday);
    assert_eq!(w.to_string(), "2026-W53");
    assert_eq!(w.end_ms(), ts("2027-01-04T00:00:00Z"));
    assert_eq!(b(Week, "2026-W53"), w);
    assert_eq!(b(Week, "2026-12-28"), w);
    assert_eq!(w.next().to_string(), "2027-W01");
    let days: Vec<String> = w.children().iter().map(Bucket::to_string).collect();
    assert_eq!(
        days,
        ["2026-12-28", "2026-12-29", "2026-12-30", "2026-12-31", "2027-01-01", "2027-01-02", "2027-01-03"]
    );
    // Its days feed months/years of both calendar years.
    let jan1 = b(Day, "2027-01-01");
    assert_eq!(jan1.rollup_parents(), [w, b(Month, "2027-01")]);
    assert_eq!(jan1.ancestors(), [w, b(Month, "2027-01"), b(Year, "2027")]);
    assert_eq!(decompose(w.start_ms, w.end_ms()), Ok(vec![w]));
    // 2025 has only 52 weeks.
    let err = Bucket::parse(Week, "2025-W53").unwrap_err();
    assert!(err.to_string().contains("weeks 01-52"), "{err}");
}

#[test]
fn week_straddling_a_month_boundary() {
    let w = b(Week, "2026-W49");
    assert_eq!(w.start_ms, ts("2026-11-30T00:00:00Z"));
    assert_eq!(w.parent(Month), b(Month, "2026-11"));
    let kids = w.children();
    assert_eq!(kids.len(), 7);
    assert_eq!(kids[0].parent(Month), b(Month, "2026-11"));
    assert_eq!(kids[1].parent(Month), b(Month, "2026-12"));
    // One week piece, not 7 days.
    assert_eq!(decompose(w.start_ms, w.end_ms()), Ok(vec![w]));
    // Five weeks around February beat taking February as a month (which needs 8).
    let (from, to) = (ts("2026-01-26T00:00:00Z"), ts("2026-03-02T00:00:00Z"));
    let pieces = decompose(from, to).expect("valid");
    assert_eq!(pieces.len(), 5);
    assert!(pieces.iter().all(|p| p.granularity == Week));
    // Found by the minimality property against a "months first" cover (24 pieces):
    // ending on Sunday 2027-12-05, November 2027 (which starts on a Monday) is better
    // taken as 4 weeks plus the week 2027-11-29..12-05 than as a month plus 5 days.
    let pieces = decompose(ts("2027-01-05T00:00:00Z"), ts("2027-12-06T00:00:00Z")).expect("valid");
    assert_eq!(pieces.len(), 23);
    assert_eq!(pieces[pieces.len() - 1].to_string(), "2027-W48");
    assert_eq!(pieces[pieces.len() - 5].to_string(), "2027-W44");
}

#[test]
fn leap_day_2028_02_29() {
    let d = Bucket::containing(Day, ts("2028-02-29T13:00:00Z"));
    assert_eq!(d.to_string(), "2028-02-29");
    assert_eq!(b(Day, "2028-02-29"), d);
    assert_eq!(d.next().to_string(), "2028-03-01");
    assert_eq!(b(Month, "2028-02").children().len(), 29);
    assert_eq!(b(Year, "2028").duration_ms(), 366 * DAY_MS);
    assert_eq!(b(Hour, "2028-02-29T23").next(), b(Hour, "2028-03-01T00"));
    let err = Bucket::parse(Day, "2027-02-29").unwrap_err();
    assert_eq!(err.to_string(), r#"invalid day bucket "2027-02-29": 2027-02 has days 01-28, not 29"#);
}

#[test]
fn feb_2027_has_28_children_and_is_one_piece() {
    let feb = b(Month, "2027-02");
    assert_eq!(feb.children().len(), 28);
    // Feb 2027 starts on a Monday and is exactly 4 weeks; the month is still 1 piece.
    assert!(Bucket::is_aligned(Week, feb.start_ms));
    assert_eq!(decompose(feb.start_ms, feb.end_ms()), Ok(vec![feb]));
}

#[test]
fn year_2026_children_are_its_12_months() {
    let y = b(Year, "2026");
    let months: Vec<String> = y.children().iter().map(Bucket::to_string).collect();
    let expected: Vec<String> = (1..=12).map(|m| format!("2026-{m:02}")).collect();
    assert_eq!(months, expected);
    assert_eq!(decompose(y.start_ms, y.end_ms()), Ok(vec![y]));
}

#[test]
fn hour_and_day_children() {
    assert!(b(Hour, "2026-11-28T07").children().is_empty());
    assert_eq!(b(Day, "2026-11-28").children().len(), 24);
}

#[test]
fn pre_1970_timestamps_floor_downwards() {
    let t = -1; // 1969-12-31T23:59:59.999Z
    let labels: Vec<String> = Granularity::ALL.iter().map(|&g| Bucket::containing(g, t).to_string()).collect();
    // The week of Monday 1969-12-29 contains Thursday 1970-01-01, so it is 1970-W01.
    assert_eq!(labels, ["1969-12-31T23", "1969-12-31", "1970-W01", "1969-12", "1969"]);
    assert_eq!(Bucket::containing(Hour, t).start_ms, -HOUR_MS);
    assert_eq!(Bucket::containing(Day, -DAY_MS - 1).start_ms, -2 * DAY_MS);
    assert_eq!(Bucket::containing(Day, -DAY_MS).start_ms, -DAY_MS);
    assert_eq!(Bucket::containing(Month, ts("1600-02-29T12:00:00Z")), b(Month, "1600-02"));
    assert_eq!(b(Year, "-0001").next(), b(Year, "0000"));
    assert_eq!(b(Year, "9999").next().to_string(), "+10000");
}

#[test]
fn rollup_lineage() {
    let h = b(Hour, "2026-11-28T07");
    assert_eq!(h.rollup_parents(), [b(Day, "2026-11-28")]);
    assert_eq!(h.ancestors(), [b(Day, "2026-11-28"), b(Week, "2026-W48"), b(Month, "2026-11"), b(Year, "2026")]);
    assert_eq!(b(Month, "2026-11").ancestors(), [b(Year, "2026")]);
    assert!(b(Week, "2026-W48").rollup_parents().is_empty());
    assert!(b(Week, "2026-W48").ancestors().is_empty());
    assert!(b(Year, "2026").ancestors().is_empty());
}

#[test]
fn parse_accepts_aligned_starts_and_explains_misaligned_ones() {
    assert_eq!(b(Hour, "2026-11-28T07:00:00Z"), b(Hour, "2026-11-28T07"));
    assert_eq!(b(Hour, "2026-11-28T08:00:00+01:00"), b(Hour, "2026-11-28T07"));
    assert_eq!(b(Hour, "2026-11-28T07:00:00"), b(Hour, "2026-11-28T07"));
    assert_eq!(b(Hour, "2026-11-28"), b(Hour, "2026-11-28T00"));
    assert_eq!(b(Month, "2026-11-01"), b(Month, "2026-11"));
    assert_eq!(b(Year, "2026-01-01T00:00:00.000Z"), b(Year, "2026"));

    let err = Bucket::parse(Hour, "2026-11-28T07:30:00Z").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#""2026-11-28T07:30:00Z" is not on an hour boundary (HH:00:00Z) (the hour bucket containing it is 2026-11-28T07)"#
    );
    let err = Bucket::parse(Week, "2026-11-28").unwrap_err();
    assert!(err.to_string().contains("a Monday"), "{err}");
    assert!(err.to_string().contains("2026-W48"), "{err}");
    let err = Bucket::parse(Hour, "2026-11-28T07:00:00.0001Z").unwrap_err();
    assert!(matches!(err, ParseBucketError::NotAligned { .. }), "{err}");
    let err = Bucket::parse(Day, "2026-11").unwrap_err();
    assert!(err.to_string().contains("month label"), "{err}");
    for bad in ["", "yesterday", "2026-13", "2026-11-28T24", "20261128", "2026-W00"] {
        assert!(Bucket::parse(Day, bad).is_err(), "{bad:?}");
    }
    assert!("2026-11-28T07:00:00Z".parse::<Bucket>().is_err());
    assert!("+999999999".parse::<Bucket>().is_err()); // beyond i64 milliseconds
}

#[test]
fn bucket_serde() {
    let h = b(Hour, "2026-11-28T07");
    let json = serde_json::to_string(&h).expect("serialize");
    assert_eq!(json, format!(r#"{{"granularity":"hour","start_ms":{}}}"#, h.start_ms));
    assert_eq!(serde_json::from_str::<Bucket>(&json).expect("deserialize"), h);
}

#[test]
fn decompose_errors() {
    let from = ts("2026-11-28T07:30:00Z");
    assert_eq!(
        decompose(from, from + DAY_MS).unwrap_err().to_string(),
        "range start 2026-11-28T07:30:00Z is not on an hour boundary"
    );
    let from = ts("2026-11-28T07:00:00Z");
    assert_eq!(
        decompose(from, from + 1).unwrap_err().to_string(),
        "range end 2026-11-28T07:00:00.001Z is not on an hour boundary"
    );
    for to in [from, from - HOUR_MS] {
        let msg = decompose(from, to).unwrap_err().to_string();
        assert!(msg.starts_with("range is empty: from must be before to"), "{msg}");
    }
}

#[test]
fn decompose_examples() {
    let labels = |from: &str, to: &str| -> Vec<String> {
        decompose(ts(from), ts(to)).expect("valid").iter().map(Bucket::to_string).collect()
    };
    assert_eq!(
        labels("2026-11-28T22:00:00Z", "2026-11-29T02:00:00Z"),
        ["2026-11-28T22", "2026-11-28T23", "2026-11-29T00", "2026-11-29T01"]
    );
    assert_eq!(labels("2025-12-31T23:00:00Z", "2028-01-02T00:00:00Z"), ["2025-12-31T23", "2026", "2027", "2028-01-01"]);
    assert_eq!(labels("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"), ["2026-11"]);
    // Pre-1970 ranges work the same way.
    assert_eq!(labels("1969-12-29T00:00:00Z", "1970-01-05T01:00:00Z"), ["1970-W01", "1970-01-05T00"]);
}

#[test]
fn the_same_bucket_a_year_earlier() {
    let earlier = |g: Granularity, s: &str| b(g, s).year_earlier().to_string();
    assert_eq!(earlier(Hour, "2026-11-27T13"), "2025-11-27T13");
    assert_eq!(earlier(Day, "2026-03-01"), "2025-03-01");
    assert_eq!(earlier(Day, "2028-02-29"), "2027-02-28");
    assert_eq!(earlier(Day, "2029-02-28"), "2028-02-28");
    assert_eq!(earlier(Week, "2027-W10"), "2026-W10");
    assert_eq!(earlier(Week, "2027-W01"), "2026-W01");
    assert_eq!(earlier(Week, "2027-W52"), "2026-W52");
    assert_eq!(earlier(Week, "2026-W53"), "2025-W52", "2025 has none");
    assert_eq!(earlier(Month, "2026-01"), "2025-01");
    assert_eq!(earlier(Year, "2026"), "2025");
    assert_eq!(year_earlier_ms(ts("2028-02-29T05:00:00Z")), ts("2027-02-28T05:00:00Z"));
    assert_eq!(year_earlier_ms(ts("2026-12-31T23:00:00Z")), ts("2025-12-31T23:00:00Z"));
}
