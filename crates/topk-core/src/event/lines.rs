//! The two front ends: NDJSON lines (a fast path for the common shape, serde for the
//! rest and for precise errors) and CSV rows with a header, both read into the same
//! [`RawField`]s, that [`RawEvent::validate`] checks.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{truncate, Event, Limits, RawEvent, RawField, Rejection, FIELDS};

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
pub(super) fn parse_json_fast(line: &str) -> Option<RawEvent<'_>> {
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

pub(super) fn parse_json_serde(line: &str) -> Result<RawEvent<'_>, (Option<String>, String)> {
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
