//! What one ingest call did: accepted, skipped and rejected lines.

use std::collections::BTreeMap;

use topk_core::event::Rejection;

/// What one ingest call did.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IngestReport {
    pub accepted: u64,
    /// Lines skipped because an earlier run of the same source already appended them.
    #[serde(skip_serializing_if = "is_zero")]
    pub already_ingested: u64,
    pub rejected_count: u64,
    /// The rejected lines, at most [`MAX_LISTED_REJECTIONS`] of them.
    pub rejected: Vec<Rejection>,
    /// Every rejection counted by what was wrong: the field at fault, or the kind of
    /// problem with the whole line ([`Rejection::category`], a closed set).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected_by_field: BTreeMap<String, u64>,
    /// Input lines read (blank ones included).
    #[serde(skip)]
    pub lines: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A reply lists this many rejected lines at most; `rejected_count` has the total.
pub const MAX_LISTED_REJECTIONS: usize = 1000;

impl IngestReport {
    pub fn add_rejections(&mut self, rejections: Vec<Rejection>) {
        self.rejected_count += rejections.len() as u64;
        for r in &rejections {
            *self.rejected_by_field.entry(r.category().to_string()).or_default() += 1;
        }
        self.list(rejections);
    }

    /// Keeps rejections for the reply, up to [`MAX_LISTED_REJECTIONS`].
    fn list(&mut self, rejections: Vec<Rejection>) {
        let room = MAX_LISTED_REJECTIONS.saturating_sub(self.rejected.len());
        self.rejected.extend(rejections.into_iter().take(room));
    }

    /// Counts one valid event: appended now, or already in the log from an earlier run.
    pub fn tally(&mut self, taken: bool) {
        if taken {
            self.accepted += 1;
        } else {
            self.already_ingested += 1;
        }
    }

    /// Every line was rejected (and some were): the input was not what was asked for.
    pub fn nothing_accepted(&self) -> bool {
        self.accepted == 0 && self.already_ingested == 0 && self.rejected_count > 0
    }

    pub fn merge(&mut self, other: IngestReport) {
        self.accepted += other.accepted;
        self.lines += other.lines;
        self.already_ingested += other.already_ingested;
        self.rejected_count += other.rejected_count;
        self.list(other.rejected);
        for (field, n) in other.rejected_by_field {
            *self.rejected_by_field.entry(field).or_default() += n;
        }
    }
}
