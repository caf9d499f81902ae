//! Lists as CSV (`format=csv`, or `Accept: text/csv`): one header line, then a line per
//! row, with the same fields and meanings as the JSON rows; an empty cell where the JSON
//! has null.

use std::collections::HashMap;

use axum::http::{header, HeaderMap};

use super::{bad, ApiError};
use crate::query::{MoversAnswer, ProjectionAnswer, TopAnswer};

/// How an answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Json,
    Csv,
}

impl Format {
    /// `format=json|csv`; without it, CSV when the client accepts `text/csv` and not JSON.
    pub(super) fn of(p: &HashMap<String, String>, headers: &HeaderMap) -> Result<Format, ApiError> {
        match p.get("format").map(String::as_str) {
            Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(bad(format!("format: {other:?} is not one of json, csv"))),
            None => {
                let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
                Ok(if accept.contains("text/csv") && !accept.contains("application/json") {
                    Format::Csv
                } else {
                    Format::Json
                })
            }
        }
    }

    pub(super) fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

fn cell<T: ToString>(v: Option<T>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

fn write(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).expect("writing to memory");
    for r in rows {
        w.write_record(&r).expect("writing to memory");
    }
    w.into_inner().expect("writing to memory")
}

/// A top (or worst-sellers) list.
pub(super) fn top_csv(a: &TopAnswer) -> Vec<u8> {
    let header = [
        "rank",
        "product_id",
        "name",
        "count",
        "error_bound",
        "revenue_cents",
        "share",
        "source",
        "previous_rank",
        "rank_change",
    ];
    write(
        &header,
        a.rows.iter().map(|r| {
            vec![
                r.rank.to_string(),
                r.product_id.clone(),
                cell(r.name.as_ref()),
                r.count.to_string(),
                r.error_bound.to_string(),
                r.revenue_cents.to_string(),
                cell(r.share),
                r.source.as_str().to_string(),
                cell(r.previous_rank.flatten()),
                cell(r.rank_change.flatten()),
            ]
        }),
    )
}

/// A movers list.
pub(super) fn movers_csv(a: &MoversAnswer) -> Vec<u8> {
    let header = [
        "rank",
        "product_id",
        "name",
        "now",
        "then",
        "change",
        "change_error",
        "relative_change",
        "rank_now",
        "rank_then",
        "entered",
        "left",
        "source",
    ];
    write(
        &header,
        a.rows.iter().map(|r| {
            vec![
                r.rank.to_string(),
                r.product_id.clone(),
                cell(r.name.as_ref()),
                r.now.to_string(),
                r.then.to_string(),
                r.change.to_string(),
                cell(r.change_error),
                cell(r.relative_change),
                cell(r.rank_now),
                cell(r.rank_then),
                r.entered.to_string(),
                r.left.to_string(),
                r.source.as_str().to_string(),
            ]
        }),
    )
}

/// A projection: the counted numbers and the projected ones, each named so.
pub(super) fn projection_csv(a: &ProjectionAnswer) -> Vec<u8> {
    let header = [
        "rank",
        "product_id",
        "name",
        "counted",
        "counted_error_bound",
        "counted_revenue_cents",
        "projected",
        "projected_low",
        "projected_high",
        "projected_revenue_cents",
        "source",
    ];
    write(
        &header,
        a.rows.iter().map(|r| {
            vec![
                r.rank.to_string(),
                r.product_id.clone(),
                cell(r.name.as_ref()),
                r.counted.to_string(),
                r.counted_error_bound.to_string(),
                r.counted_revenue_cents.to_string(),
                r.projected.to_string(),
                r.projected_low.to_string(),
                r.projected_high.to_string(),
                r.projected_revenue_cents.to_string(),
                r.source.as_str().to_string(),
            ]
        }),
    )
}
