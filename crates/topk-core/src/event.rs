//! The sale event (DESIGN §2), its validation, and the NDJSON and CSV front ends.
//!
//! Both formats are read into the same [`RawField`]s and validated by one function, so a
//! rule (and its error message) exists once. Every rejection names the line, the field and
//! the reason; valid lines next to a bad one are never affected.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::timestamp::parse_rfc3339;

/// Longest accepted `product_id` and `event_id`, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Longest accepted optional text field (country, city, category, product_name), in bytes.
pub const MAX_TEXT_BYTES: usize = 256;
/// Largest accepted |quantity|. With [`MAX_PRICE_CENTS`] it bounds one event's revenue by
/// 10^14 cents, so ~92,000 extreme events of one product are needed in one hour to reach
/// i64's limit; sums saturate there rather than wrap.
pub const MAX_QUANTITY: i64 = 100_000;
/// Largest accepted price: 10 million currency units.
pub const MAX_PRICE_CENTS: i64 = 1_000_000_000;
/// 2000-01-01T00:00:00Z: older timestamps are almost certainly seconds mistaken for ms.
pub const MIN_TS_MS: i64 = 946_684_800_000;

/// The fields an event may carry; anything else is rejected.
pub const FIELDS: [&str; 11] = [
    "event_id",
    "ts",
    "product_id",
    "quantity",
    "kind",
    "sale_ts",
    "price_cents",
    "country",
    "city",
    "category",
    "product_name",
];

/// Whether an event is a sale or the refund of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sale,
    Refund,
}

/// A validated sale or refund. Strings borrow from the input line where they can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub ts_ms: i64,
    pub product_id: Cow<'a, str>,
    /// Positive for sales, negative for refunds.
    pub quantity: i64,
    pub kind: Kind,
    /// For a refund: when the refunded sale happened; its buckets are corrected.
    pub sale_ts_ms: Option<i64>,
    pub price_cents: Option<i64>,
    pub country: Option<Cow<'a, str>>,
    pub city: Option<Cow<'a, str>>,
    pub category: Option<Cow<'a, str>>,
    pub product_name: Option<Cow<'a, str>>,
}

impl Event<'_> {
    /// The time whose buckets this event counts in: a refund's `sale_ts` when given.
    pub fn bucket_ts_ms(&self) -> i64 {
        self.sale_ts_ms.unwrap_or(self.ts_ms)
    }

    /// Signed revenue in cents (0 when the price is unknown).
    pub fn revenue_cents(&self) -> i64 {
        self.quantity * self.price_cents.unwrap_or(0)
    }
}

/// The clock-dependent bounds of validation, fixed per batch so a batch validates
/// consistently (and tests can pin "now").
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub now_ms: i64,
    /// How far past `now_ms` a timestamp may lie (clock skew of producers).
    pub max_future_ms: i64,
}

impl Limits {
    pub const DEFAULT_MAX_FUTURE_MS: i64 = 24 * 3_600_000;

    pub fn at(now_ms: i64) -> Self {
        Limits { now_ms, max_future_ms: Self::DEFAULT_MAX_FUTURE_MS }
    }
}

/// Why one input line was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejection {
    /// 1-based line number in the body or file.
    pub line: u64,
    /// The offending field, when the problem is in one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "line {}: {}: {}", self.line, field, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

/// The labels [`Rejection::category`] gives besides the names in [`FIELDS`].
pub const LINE_PROBLEMS: [&str; 8] = ["unknown_field", "utf8", "json", "event", "csv", "too_long", "empty", "line"];

impl Rejection {
    /// What was wrong, as a label from a closed set (for counts and metric labels, which
    /// a client must not be able to multiply): the field at fault when it is one of
    /// [`FIELDS`], `unknown_field` for any other name, else the kind of problem with the
    /// whole line (one of [`LINE_PROBLEMS`]).
    pub fn category(&self) -> &'static str {
        if let Some(field) = &self.field {
            return FIELDS.iter().find(|f| **f == field).copied().unwrap_or("unknown_field");
        }
        let r = self.reason.as_str();
        if r.starts_with("invalid UTF-8") {
            "utf8"
        } else if r.starts_with("invalid JSON") {
            "json"
        } else if r.starts_with("invalid event") {
            "event"
        } else if r.starts_with("invalid CSV") || r.starts_with("has ") {
            "csv"
        } else if r.starts_with("the line is longer") {
            "too_long"
        } else if r.starts_with("empty") {
            "empty"
        } else {
            "line"
        }
    }
}

/// A problem with one field, before the line number is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

fn field_err(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError { field, reason: reason.into() }
}

/// One field as read from the input, before validation.
#[derive(Debug, Clone)]
pub enum RawField<'a> {
    /// A JSON string (unescaped).
    Str(Cow<'a, str>),
    /// A JSON literal that is not a string or null: a number, bool, array or object.
    Lit(&'a str),
    /// A CSV cell: text that may be read as a number or a string.
    Text(&'a str),
}

/// The fields of one input line, indexed like [`FIELDS`].
#[derive(Debug, Default)]
pub struct RawEvent<'a> {
    pub fields: [Option<RawField<'a>>; 11],
}

const EVENT_ID: usize = 0;
const TS: usize = 1;
const PRODUCT_ID: usize = 2;
const QUANTITY: usize = 3;
const KIND: usize = 4;
const SALE_TS: usize = 5;
const PRICE_CENTS: usize = 6;
const COUNTRY: usize = 7;
const CITY: usize = 8;
const CATEGORY: usize = 9;
const PRODUCT_NAME: usize = 10;

impl<'a> RawEvent<'a> {
    fn take(&mut self, i: usize) -> Option<RawField<'a>> {
        self.fields[i].take()
    }

    /// Validates the fields into an [`Event`], or names the first field that is wrong.
    pub fn validate(mut self, limits: &Limits) -> Result<Event<'a>, FieldError> {
        let event_id = id_field("event_id", self.take(EVENT_ID))?;
        let ts_ms = ts_field("ts", self.take(TS), limits)?.ok_or_else(|| field_err("ts", "is missing"))?;
        let product_id = id_field("product_id", self.take(PRODUCT_ID))?;
        let kind = match text_field("kind", self.take(KIND), 16)?.as_deref() {
            None | Some("sale") => Kind::Sale,
            Some("refund") => Kind::Refund,
            Some(other) => {
                return Err(field_err("kind", format!("{other:?} is not a kind (expected \"sale\" or \"refund\")")))
            }
        };
        let quantity = int_field("quantity", self.take(QUANTITY))?.unwrap_or(1);
        if quantity == 0 {
            return Err(field_err("quantity", "is 0; a sale needs a positive quantity"));
        }
        if !(-MAX_QUANTITY..=MAX_QUANTITY).contains(&quantity) {
            return Err(field_err("quantity", format!("{quantity} is out of range (|quantity| <= {MAX_QUANTITY})")));
        }
        match kind {
            Kind::Sale if quantity < 0 => {
                return Err(field_err("quantity", format!("is negative ({quantity}) but kind is not \"refund\"")))
            }
            Kind::Refund if quantity > 0 => {
                return Err(field_err("quantity", format!("must be negative for a refund, got {quantity}")))
            }
            _ => {}
        }
        let sale_ts_ms = ts_field("sale_ts", self.take(SALE_TS), limits)?;
        if let Some(sale_ts) = sale_ts_ms {
            if kind != Kind::Refund {
                return Err(field_err("sale_ts", "is only allowed on refunds (kind \"refund\")"));
            }
            if sale_ts > ts_ms {
                return Err(field_err("sale_ts", "is after ts: a refund cannot precede its sale"));
            }
        }
        let price_cents = int_field("price_cents", self.take(PRICE_CENTS))?;
        if let Some(p) = price_cents {
            if !(0..=MAX_PRICE_CENTS).contains(&p) {
                return Err(field_err("price_cents", format!("{p} is out of range (0..={MAX_PRICE_CENTS})")));
            }
        }
        Ok(Event {
            event_id,
            ts_ms,
            product_id,
            quantity,
            kind,
            sale_ts_ms,
            price_cents,
            country: text_field("country", self.take(COUNTRY), MAX_TEXT_BYTES)?,
            city: text_field("city", self.take(CITY), MAX_TEXT_BYTES)?,
            category: text_field("category", self.take(CATEGORY), MAX_TEXT_BYTES)?,
            product_name: text_field("product_name", self.take(PRODUCT_NAME), MAX_TEXT_BYTES)?,
        })
    }
}

fn describe(raw: &RawField<'_>) -> String {
    match raw {
        RawField::Str(s) => format!("the string {:?}", truncate(s, 40)),
        RawField::Lit(l) | RawField::Text(l) => truncate(l, 40).to_string(),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn text_field<'a>(
    field: &'static str,
    raw: Option<RawField<'a>>,
    max: usize,
) -> Result<Option<Cow<'a, str>>, FieldError> {
    let s = match raw {
        None => return Ok(None),
        Some(RawField::Str(s)) => s,
        Some(RawField::Text(s)) => Cow::Borrowed(s),
        Some(lit @ RawField::Lit(_)) => {
            return Err(field_err(field, format!("must be a string, got {}", describe(&lit))))
        }
    };
    if s.len() > max {
        return Err(field_err(field, format!("is {} bytes long; at most {max} allowed", s.len())));
    }
    let control = if s.is_ascii() { s.bytes().any(|b| b < 0x20 || b == 0x7f) } else { s.chars().any(char::is_control) };
    if control {
        return Err(field_err(field, "contains a control character"));
    }
    Ok(Some(s))
}

/// Checks an id given elsewhere than in an event (a URL path) by the rules of
/// `product_id`: 1–128 bytes, no control characters, no surrounding whitespace.
pub fn check_id(what: &'static str, id: &str) -> Result<(), String> {
    id_field(what, Some(RawField::Str(Cow::Borrowed(id)))).map(drop).map_err(|e| format!("{}: {}", e.field, e.reason))
}

fn id_field<'a>(field: &'static str, raw: Option<RawField<'a>>) -> Result<Cow<'a, str>, FieldError> {
    match text_field(field, raw, MAX_ID_BYTES)? {
        None => Err(field_err(field, "is missing")),
        Some(s) if s.trim().is_empty() => Err(field_err(field, "is empty")),
        // " p1 " would count apart from "p1": refused rather than silently trimmed.
        Some(s) if s.trim() != s => {
            Err(field_err(field, format!("{:?} has leading or trailing whitespace", truncate(&s, 40))))
        }
        Some(s) => Ok(s),
    }
}

fn int_field(field: &'static str, raw: Option<RawField<'_>>) -> Result<Option<i64>, FieldError> {
    let text = match &raw {
        None => return Ok(None),
        Some(RawField::Lit(t)) | Some(RawField::Text(t)) => *t,
        Some(s @ RawField::Str(_)) => return Err(field_err(field, format!("must be an integer, got {}", describe(s)))),
    };
    text.parse::<i64>()
        .map(Some)
        .map_err(|_| field_err(field, format!("must be an integer, got {}", truncate(text, 40))))
}

fn ts_field(field: &'static str, raw: Option<RawField<'_>>, limits: &Limits) -> Result<Option<i64>, FieldError> {
    let ms = match &raw {
        None => return Ok(None),
        Some(RawField::Str(s)) => parse_rfc3339(s).map_err(|e| field_err(field, e))?,
        Some(RawField::Lit(t)) | Some(RawField::Text(t)) => match t.parse::<i64>() {
            Ok(ms) => ms,
            Err(_) if matches!(raw, Some(RawField::Text(_))) => parse_rfc3339(t).map_err(|e| field_err(field, e))?,
            Err(_) => {
                return Err(field_err(
                    field,
                    format!("must be an RFC 3339 string or integer epoch milliseconds, got {}", truncate(t, 40)),
                ))
            }
        },
    };
    if ms < MIN_TS_MS {
        return Err(field_err(
            field,
            format!(
                "{} is before 2000-01-01 (epoch seconds instead of milliseconds?)",
                crate::timestamp::format_rfc3339(ms)
            ),
        ));
    }
    if ms > limits.now_ms.saturating_add(limits.max_future_ms) {
        return Err(field_err(
            field,
            format!(
                "{} is more than {} h in the future",
                crate::timestamp::format_rfc3339(ms),
                limits.max_future_ms / 3_600_000
            ),
        ));
    }
    Ok(Some(ms))
}

/// The JSON shape of an event line: every known field as raw JSON, unknown ones refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine<'a> {
    #[serde(borrow, default)]
    event_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    product_id: Option<&'a RawValue>,
    /// `null` is kept (as the raw text `null`), to be refused rather than read as absent.
    #[serde(borrow, default, deserialize_with = "raw_keeping_null")]
    quantity: Option<&'a RawValue>,
    #[serde(borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sale_ts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    price_cents: Option<&'a RawValue>,
    #[serde(borrow, default)]
    country: Option<&'a RawValue>,
    #[serde(borrow, default)]
    city: Option<&'a RawValue>,
    #[serde(borrow, default)]
    category: Option<&'a RawValue>,
    #[serde(borrow, default)]
    product_name: Option<&'a RawValue>,
}

fn raw_keeping_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn raw_json(v: Option<&RawValue>) -> Result<Option<RawField<'_>>, String> {
    let Some(v) = v else { return Ok(None) };
    let text = v.get();
    if text == "null" {
        return Ok(None);
    }
    if let Some(inner) = text.strip_prefix('"') {
        let inner = &inner[..inner.len() - 1];
        if !inner.contains('\\') {
            return Ok(Some(RawField::Str(Cow::Borrowed(inner))));
        }
        let owned: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
        return Ok(Some(RawField::Str(Cow::Owned(owned))));
    }
    Ok(Some(RawField::Lit(text)))
}

/// The hot path: a flat JSON object of known keys, unescaped strings and integer
/// literals, as producers write them. Anything else (escapes, floats, nesting, unknown or
/// repeated keys, malformed JSON) returns `None` and goes through serde, which then
/// produces exactly the same result or error as it would have without this path.
fn parse_json_fast(line: &str) -> Option<RawEvent<'_>> {
    let b = line.as_bytes();
    let ws = |mut i: usize| {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        i
    };
    // The end of a string starting after the quote at `i`, if it has no escapes.
    let string_end = |i: usize| {
        let n = b[i..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        (b[i + n] == b'"').then_some(i + n)
    };
    let mut raw = RawEvent::default();
    let mut i = ws(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(i + 1);
    if b.get(i) == Some(&b'}') {
        return (ws(i + 1) == b.len()).then_some(raw);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(i + 1)?;
        let field = FIELDS.iter().position(|f| f.as_bytes() == &b[i + 1..key_end])?;
        i = ws(key_end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(i + 1);
        let value = match *b.get(i)? {
            b'"' => {
                let end = string_end(i + 1)?;
                let v = RawField::Str(Cow::Borrowed(&line[i + 1..end]));
                i = end + 1;
                Some(v)
            }
            b'-' | b'0'..=b'9' => {
                let len = b[i..].iter().position(|c| !matches!(c, b'-' | b'0'..=b'9')).unwrap_or(b.len() - i);
                let lit = &line[i..i + len];
                let digits = lit.strip_prefix('-').unwrap_or(lit);
                if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) || digits.contains('-') {
                    return None;
                }
                i += len;
                Some(RawField::Lit(lit))
            }
            _ => return None,
        };
        if raw.fields[field].is_some() {
            return None;
        }
        raw.fields[field] = value;
        i = ws(i);
        match b.get(i) {
            Some(b',') => i = ws(i + 1),
            Some(b'}') => return (ws(i + 1) == b.len()).then_some(raw),
            _ => return None,
        }
    }
}

/// Parses one NDJSON line into raw fields; the error is the rejection without its line.
pub fn parse_json_line(line: &str) -> Result<RawEvent<'_>, (Option<String>, String)> {
    match parse_json_fast(line) {
        Some(raw) => Ok(raw),
        None => parse_json_serde(line),
    }
}

fn parse_json_serde(line: &str) -> Result<RawEvent<'_>, (Option<String>, String)> {
    // serde would also accept a struct written as an array; an event is an object.
    if !line.trim_start().starts_with('{') {
        return Err((None, "invalid event: expected a JSON object {...}".into()));
    }
    let j: JsonLine<'_> = serde_json::from_str(line).map_err(|e| json_error(&e))?;
    if j.quantity.is_some_and(|q| q.get() == "null") {
        // Read as "absent" it would silently count 1.
        return Err((Some("quantity".into()), "is null: leave it out to mean 1, or give a whole number".into()));
    }
    let mut raw = RawEvent::default();
    let all = [
        j.event_id,
        j.ts,
        j.product_id,
        j.quantity,
        j.kind,
        j.sale_ts,
        j.price_cents,
        j.country,
        j.city,
        j.category,
        j.product_name,
    ];
    for (i, v) in all.into_iter().enumerate() {
        raw.fields[i] = raw_json(v).map_err(|e| (Some(FIELDS[i].to_string()), e))?;
    }
    Ok(raw)
}

fn json_error(e: &serde_json::Error) -> (Option<String>, String) {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some(end) = rest.find('`') {
            // The name is the client's: shortened, so a reply cannot be made to echo megabytes.
            let name = &rest[..end];
            let shown = if name.len() > 64 { format!("{}…", truncate(name, 64)) } else { name.to_string() };
            return (Some(shown), format!("unknown field (allowed: {})", FIELDS.join(", ")));
        }
    }
    // serde_json appends " at line 1 column N"; the line is ours to report, the column helps.
    let msg = match msg.rfind(" at line ") {
        Some(i) => {
            let col = msg[i..].rsplit(' ').next().unwrap_or("");
            format!("{} (column {col})", &msg[..i])
        }
        None => msg,
    };
    if e.is_data() && !msg.starts_with("invalid type: map") {
        (None, format!("invalid event: {msg}"))
    } else {
        (None, format!("invalid JSON: {msg}"))
    }
}

/// Where a parsed line came from, for replay checkpoints and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineInfo {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line's first byte in the whole input.
    pub start: u64,
    /// Byte offset just past the line's newline.
    pub end: u64,
}

/// The UTF-8 byte order mark some editors put at the start of a text file.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses an NDJSON buffer. Valid events go to `on_event`, bad lines come back as
/// rejections; blank lines are skipped, and so is a byte order mark at the very start of
/// the input (`base_offset` 0). `first_line` and `base_offset` place the buffer in a
/// larger input.
pub fn parse_ndjson<'a>(
    input: &'a [u8],
    first_line: u64,
    base_offset: u64,
    limits: &Limits,
    mut on_event: impl FnMut(LineInfo, Event<'a>),
) -> Vec<Rejection> {
    let mut rejections = Vec::new();
    let mut pos = if base_offset == 0 && input.starts_with(UTF8_BOM) { UTF8_BOM.len() } else { 0 };
    let mut line_no = first_line;
    while pos < input.len() {
        let nl = memchr::memchr(b'\n', &input[pos..]).map_or(input.len(), |i| pos + i);
        let end = (nl + 1).min(input.len());
        let mut bytes = &input[pos..nl];
        if let [rest @ .., b'\r'] = bytes {
            bytes = rest;
        }
        let info = LineInfo { line: line_no, start: base_offset + pos as u64, end: base_offset + end as u64 };
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            match parse_line(bytes, limits) {
                Ok(ev) => on_event(info, ev),
                Err((field, reason)) => rejections.push(Rejection { line: line_no, field, reason }),
            }
        }
        pos = end;
        line_no += 1;
    }
    rejections
}

fn parse_line<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Event<'a>, (Option<String>, String)> {
    let line = std::str::from_utf8(bytes)
        .map_err(|e| (None, format!("invalid UTF-8 at byte {} of the line", e.valid_up_to())))?;
    parse_json_line(line)?.validate(limits).map_err(|e| (Some(e.field.to_string()), e.reason))
}

/// Maps a CSV header to event fields.
#[derive(Debug, Clone)]
pub struct CsvHeader {
    columns: Vec<usize>,
}

impl CsvHeader {
    /// Reads the header row; an unknown column is an error, since its data would be lost.
    pub fn new(header: &csv::ByteRecord) -> Result<Self, String> {
        let mut columns = Vec::with_capacity(header.len());
        for (i, name) in header.iter().enumerate() {
            let name = std::str::from_utf8(name).map_err(|_| format!("column {} name is not UTF-8", i + 1))?;
            let name = name.trim();
            match FIELDS.iter().position(|f| *f == name) {
                Some(f) if columns.contains(&f) => return Err(format!("column {name:?} appears twice")),
                Some(f) => columns.push(f),
                None => return Err(format!("unknown column {name:?} (allowed: {})", FIELDS.join(", "))),
            }
        }
        Ok(CsvHeader { columns })
    }

    /// Validates one CSV record; `line` is only used for the rejection.
    pub fn parse<'a>(&self, record: &'a csv::ByteRecord, line: u64, limits: &Limits) -> Result<Event<'a>, Rejection> {
        let reject = |field: Option<String>, reason: String| Rejection { line, field, reason };
        if record.len() != self.columns.len() {
            return Err(reject(None, format!("has {} cells, the header has {}", record.len(), self.columns.len())));
        }
        let mut raw = RawEvent::default();
        for (cell, &f) in record.iter().zip(&self.columns) {
            let text = std::str::from_utf8(cell)
                .map_err(|e| reject(Some(FIELDS[f].into()), format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
            if !text.is_empty() {
                raw.fields[f] = Some(RawField::Text(text));
            }
        }
        raw.validate(limits).map_err(|e| reject(Some(e.field.into()), e.reason))
    }
}

#[cfg(test)]
mod tests {
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
        let e =
            one(r#"{"event_id":"e1","ts":"2026-11-17T10:00:00Z","product_id":"p1","price_cents":250,"country":"DE"}"#)
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
            (
                r#"{"event_id":"e","ts":1794900000000,"product_id":7}"#.into(),
                "line 1: product_id: must be a string, got 7",
            ),
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
}
