//! The sale event (DESIGN §2), its validation, and the NDJSON and CSV front ends.
//!
//! Both formats are read into the same [`RawField`]s and validated by one function, so a
//! rule (and its error message) exists once. Every rejection names the line, the field and
//! the reason; valid lines next to a bad one are never affected.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::timestamp::parse_rfc3339;

mod lines;

#[cfg(test)]
use lines::{parse_json_fast, parse_json_serde};
pub use lines::{parse_json_line, parse_ndjson, CsvHeader, LineInfo, UTF8_BOM};

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

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
