use super::*;
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 _.:-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        "[a-z]{0,3}\\\\[n\"\\\\/][a-z]{0,3}".prop_map(|s| format!("\"{s}\"")),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("-0".to_string()),
        Just("007".to_string()),
        Just("1.5".to_string()),
        Just("1e3".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("{}".to_string()),
        Just("[1]".to_string()),
        Just("--1".to_string()),
    ]
}

fn json_line() -> impl Strategy<Value = String> {
    let key =
        prop_oneof![proptest::sample::select(FIELDS.to_vec()).prop_map(String::from), Just("colour".to_string()),];
    (
        proptest::collection::vec((key, json_value(), "[ \t]{0,2}"), 0..8),
        "[ ]{0,2}",
        prop_oneof![Just(""), Just("}"), Just(",")],
    )
        .prop_map(|(kvs, pad, tail)| {
            let body: Vec<String> = kvs.iter().map(|(k, v, w)| format!("{w}\"{k}\"{w}:{w}{v}")).collect();
            format!("{pad}{{{}}}{tail}", body.join(","))
        })
}

#[test]
fn producer_shaped_lines_take_the_fast_path() {
    let line = r#"{"event_id":"e1-0000000042","ts":"2026-12-10T00:00:01.123Z","product_id":"p0000123","quantity":2,"price_cents":1999,"country":"DE","product_name":"Product 123"}"#;
    assert!(parse_json_fast(line).is_some());
    assert!(parse_json_fast(r#" { "event_id" : "r" , "kind":"refund", "quantity" : -1 } "#).is_some());
    assert!(parse_json_fast(r#"{"event_id":"a\"b"}"#).is_none(), "escapes go to serde");
}

proptest! {
    #[test]
    fn fast_json_path_agrees_with_serde(line in json_line()) {
        if let Some(fast) = parse_json_fast(&line) {
            let slow = parse_json_serde(&line);
            prop_assert!(slow.is_ok(), "fast path accepted what serde rejects: {line} -> {slow:?}");
            prop_assert_eq!(format!("{:?}", fast.fields), format!("{:?}", slow.unwrap().fields), "{}", line);
        }
    }
}

const NOW: i64 = 1_795_000_000_000; // 2026-11-18

fn one(line: &str) -> Result<Event<'_>, Rejection> {
    let mut got = None;
    let rej = parse_ndjson(line.as_bytes(), 1, 0, &Limits::at(NOW), |_, e| got = Some(e));
    match (got, rej.into_iter().next()) {
        (Some(e), None) => Ok(e),
        (None, Some(r)) => Err(r),
        other => panic!("unexpected {other:?}"),
    }
}

fn reason(line: &str) -> String {
    one(line).unwrap_err().to_string()
}

#[test]
fn accepts_a_full_sale_and_defaults_quantity() {
    let e = one(r#"{"event_id":"e1","ts":"2026-11-17T10:00:00Z","product_id":"p1","price_cents":250,"country":"DE"}"#)
        .unwrap();
    assert_eq!(e.quantity, 1);
    assert_eq!(e.kind, Kind::Sale);
    assert_eq!(e.revenue_cents(), 250);
    assert_eq!(e.country.as_deref(), Some("DE"));
    assert_eq!(e.ts_ms, parse_rfc3339("2026-11-17T10:00:00Z").unwrap());
}

#[test]
fn refund_counts_in_sale_hour() {
    let e = one(r#"{"event_id":"r1","kind":"refund","ts":1794900000000,"sale_ts":"2026-11-16T10:00:00Z","product_id":"p1","quantity":-2,"price_cents":100}"#).unwrap();
    assert_eq!(e.bucket_ts_ms(), parse_rfc3339("2026-11-16T10:00:00Z").unwrap());
    assert_eq!(e.revenue_cents(), -200);
}

#[test]
fn escaped_strings_are_unescaped() {
    let e = one(r#"{"event_id":"e\u0031","ts":1794900000000,"product_id":"caf\u00e9"}"#).unwrap();
    assert_eq!(e.event_id, "e1");
    assert_eq!(e.product_id, "café");
}

#[test]
fn each_bad_field_gets_a_clear_reason() {
    let long = "x".repeat(10 * 1024);
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "line 1: invalid JSON: key must be a string (column 2)"),
        (r#"{"event_id":"e","ts":1794900000000}"#.into(), "line 1: product_id: is missing"),
        (r#"{"event_id":"e","ts":1794900000000,"product_id":""}"#.into(), "line 1: product_id: is empty"),
        (
            format!(r#"{{"event_id":"e","ts":1794900000000,"product_id":"{long}"}}"#),
            "line 1: product_id: is 10240 bytes long; at most 128 allowed",
        ),
        (r#"{"event_id":"e","ts":1794900000000,"product_id":7}"#.into(), "line 1: product_id: must be a string, got 7"),
        (
            r#"{"event_id":"e","ts":1794900000000,"product_id":"p","quantity":1.5}"#.into(),
            "line 1: quantity: must be an integer, got 1.5",
        ),
        (
            r#"{"event_id":"e","ts":1794900000000,"product_id":"p","quantity":"2"}"#.into(),
            "line 1: quantity: must be an integer, got the string \"2\"",
        ),
        (
            r#"{"event_id":"e","ts":1794900000000,"product_id":"p","quantity":0}"#.into(),
            "line 1: quantity: is 0; a sale needs a positive quantity",
        ),
        (
            r#"{"event_id":"e","ts":1794900000000,"product_id":"p","quantity":-1}"#.into(),
            "line 1: quantity: is negative (-1) but kind is not \"refund\"",
        ),
        (
            r#"{"event_id":"e","ts":"noon","product_id":"p"}"#.into(),
            "line 1: ts: \"noon\" is not an RFC 3339 timestamp",
        ),
        (
            r#"{"event_id":"e","ts":1700000000,"product_id":"p"}"#.into(),
            "line 1: ts: 1970-01-20T16:13:20.000Z is before 2000-01-01",
        ),
        (
            r#"{"event_id":"e","ts":"2026-11-20T00:00:00Z","product_id":"p"}"#.into(),
            "line 1: ts: 2026-11-20T00:00:00.000Z is more than 24 h in the future",
        ),
        (
            r#"{"event_id":"e","ts":1794900000000,"product_id":"p","colour":"red"}"#.into(),
            "line 1: colour: unknown field (allowed: event_id, ts,",
        ),
        (r#"{"ts":1794900000000,"product_id":"p"}"#.into(), "line 1: event_id: is missing"),
        (
            r#"{"event_id":"e","ts":1794900000000,"product_id":"p","kind":"gift"}"#.into(),
            "line 1: kind: \"gift\" is not a kind",
        ),
        (
            r#"{"event_id":"e","ts":1794900000000,"product_id":"p","sale_ts":1794800000000}"#.into(),
            "line 1: sale_ts: is only allowed on refunds",
        ),
        (r#"[1,2]"#.into(), "line 1: invalid event: expected a JSON object"),
        (
            r#"{"event_id":"e","ts":1794900000000,"product_id":"p","quantity":null}"#.into(),
            "line 1: quantity: is null: leave it out to mean 1",
        ),
        (
            r#"{"event_id":"e","ts":1794900000000,"product_id":" p1 "}"#.into(),
            "line 1: product_id: \" p1 \" has leading or trailing whitespace",
        ),
        (
            r#"{"event_id":"e ","ts":1794900000000,"product_id":"p1"}"#.into(),
            "line 1: event_id: \"e \" has leading or trailing whitespace",
        ),
        (
            r#"{"event_id":"e","ts":1794900000000,"product_id":"p"} x"#.into(),
            "line 1: invalid JSON: trailing characters (column 54)",
        ),
    ];
    for (line, want) in cases {
        let got = reason(&line);
        assert!(got.starts_with(want), "for {line:.60}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn rejections_fall_into_a_closed_set_of_categories() {
    let long = format!(r#"{{"event_id":"e","ts":1794900000000,"product_id":"p","{}":1}}"#, "k".repeat(5000));
    let cases = [
        (r#"{"event_id":"e","ts":1794900000000,"product_id":"p","price_cents":-1}"#.to_string(), "price_cents"),
        (r#"{"event_id":"e","ts":1794900000000,"product_id":"p","colour":"red"}"#.into(), "unknown_field"),
        (long, "unknown_field"),
        ("{not json".into(), "json"),
        ("[1]".into(), "event"),
        (r#"{"event_id":"\u0000"}"#.into(), "event_id"),
    ];
    for (line, want) in cases {
        let r = one(&line).unwrap_err();
        assert_eq!(r.category(), want, "{r}");
        assert!(FIELDS.contains(&r.category()) || LINE_PROBLEMS.contains(&r.category()));
        assert!(r.field.as_ref().is_none_or(|f| f.len() <= 70), "a client's field name is shortened: {r}");
    }
    let bad_utf8 = parse_ndjson(b"\xff\n", 1, 0, &Limits::at(NOW), |_, _| {});
    assert_eq!(bad_utf8[0].category(), "utf8");
    let r = |reason: &str| Rejection { line: 1, field: None, reason: reason.into() }.category();
    assert_eq!(
        [
            r("has 3 cells, the header has 4"),
            r("invalid CSV: x"),
            r("the line is longer than 64 MiB"),
            r("empty message")
        ],
        ["csv", "csv", "too_long", "empty"]
    );
}

#[test]
fn a_byte_order_mark_at_the_start_of_the_input_is_skipped() {
    let input = b"\xEF\xBB\xBF{\"event_id\":\"a\",\"ts\":1794900000000,\"product_id\":\"p\"}\n";
    let mut infos = Vec::new();
    let rej = parse_ndjson(input, 1, 0, &Limits::at(NOW), |i, _| infos.push(i));
    assert!(rej.is_empty(), "{rej:?}");
    assert_eq!(infos, [LineInfo { line: 1, start: 3, end: input.len() as u64 }]);
    // Elsewhere it is not a BOM but a bad line.
    assert_eq!(parse_ndjson(input, 1, 100, &Limits::at(NOW), |_, _| {}).len(), 1);
}

#[test]
fn invalid_utf8_is_reported_and_neighbours_kept() {
    let mut input = br#"{"event_id":"a","ts":1794900000000,"product_id":"p"}"#.to_vec();
    input.extend_from_slice(b"\n{\"event_id\":\"b\xff\"}\n\n");
    input.extend_from_slice(br#"{"event_id":"c","ts":1794900000000,"product_id":"p"}"#);
    let mut ids = Vec::new();
    let rej = parse_ndjson(&input, 1, 0, &Limits::at(NOW), |_, e| ids.push(e.event_id.into_owned()));
    assert_eq!(ids, ["a", "c"]);
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0].to_string(), "line 2: invalid UTF-8 at byte 14 of the line");
}

#[test]
fn line_info_tracks_offsets() {
    let input = b"{\"event_id\":\"a\",\"ts\":1794900000000,\"product_id\":\"p\"}\r\n\n{\"event_id\":\"b\",\"ts\":1794900000000,\"product_id\":\"p\"}";
    let mut infos = Vec::new();
    parse_ndjson(input, 10, 100, &Limits::at(NOW), |i, _| infos.push(i));
    assert_eq!(infos[0], LineInfo { line: 10, start: 100, end: 154 });
    assert_eq!(infos[1].line, 12);
    assert_eq!(infos[1].end, 100 + input.len() as u64);
}

#[test]
fn csv_rows_validate_like_json() {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(
        "event_id,ts,product_id,quantity,kind,sale_ts\ne1,2026-11-17T10:00:00Z,p1,2,,\ne2,1794900000000,p1,-1,refund,2026-11-16T10:00:00Z\ne3,,p1,,,\n"
            .as_bytes(),
    );
    let mut records = rdr.byte_records();
    let header = CsvHeader::new(&records.next().unwrap().unwrap()).unwrap();
    let rows: Vec<_> = records.map(|r| r.unwrap()).collect();
    let limits = Limits::at(NOW);
    assert_eq!(header.parse(&rows[0], 2, &limits).unwrap().quantity, 2);
    let refund = header.parse(&rows[1], 3, &limits).unwrap();
    assert_eq!((refund.kind, refund.quantity), (Kind::Refund, -1));
    assert_eq!(header.parse(&rows[2], 4, &limits).unwrap_err().to_string(), "line 4: ts: is missing");
    let bad = csv::ByteRecord::from(vec!["event_id", "colour"]);
    assert!(CsvHeader::new(&bad).unwrap_err().starts_with("unknown column \"colour\""));
}
