//! Breakdowns: top lists per value of a configured set of dimensions — "the top 10 in
//! Germany", "in toys", "in Germany's toys" (the chapter's §17.11).
//!
//! A *set* is one or more of the dimensions an event carries (`country`, `city`,
//! `category`); its *values* are what events carry there. A list is kept per set and
//! value: its *breakdown key* is the set's name and the value, `country=DE` or
//! `country,category=DE|toys`, and the global list's key is `""`. Keys are what the store
//! keeps in its `breakdown` column, so a BI tool reads them as they are.
//!
//! Events without a dimension count under [`NONE`]; values past the configured number of
//! distinct values of a set count under [`OTHER`] (the batch layer decides which, see
//! `topk-batch`).

use std::fmt;

/// The value of events that carried no value for a dimension.
pub const NONE: &str = "(none)";
/// The value that values past a set's `max_values` are counted under.
pub const OTHER: &str = "(other)";
/// Distinct values per set that get their own lists unless configured.
pub const DEFAULT_MAX_VALUES: usize = 1000;

/// A dimension an event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    Country,
    City,
    Category,
}

impl Dimension {
    /// In canonical order: the order of a set's name and of its values.
    pub const ALL: [Dimension; 3] = [Dimension::Country, Dimension::City, Dimension::Category];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Country => "country",
            Dimension::City => "city",
            Dimension::Category => "category",
        }
    }

    pub fn parse(name: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Its index in [`DimValues`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The values an aggregated row carries, indexed by [`Dimension::index`]; empty where its
/// events carried none or the dimension is in no configured set.
pub type DimValues = [String; 3];

/// A set of dimensions; its name (`country,category`) in configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DimSet(u8);

impl TryFrom<String> for DimSet {
    type Error = String;
    fn try_from(s: String) -> Result<DimSet, String> {
        DimSet::parse(&s)
    }
}

impl From<DimSet> for String {
    fn from(set: DimSet) -> String {
        set.to_string()
    }
}

impl DimSet {
    pub const EMPTY: DimSet = DimSet(0);

    pub fn of(dims: &[Dimension]) -> DimSet {
        DimSet(dims.iter().fold(0, |m, d| m | 1 << d.index()))
    }

    /// Parses `country,category` (any order, no repeats).
    pub fn parse(s: &str) -> Result<DimSet, String> {
        let mut set = DimSet::EMPTY;
        for part in s.split(',').map(str::trim) {
            let d = Dimension::parse(part).ok_or_else(|| {
                format!("unknown dimension {part:?} in breakdown {s:?}: the dimensions are country, city and category")
            })?;
            if set.contains(d) {
                return Err(format!("breakdown {s:?} names {part} twice"));
            }
            set.0 |= 1 << d.index();
        }
        Ok(set)
    }

    pub fn contains(self, d: Dimension) -> bool {
        self.0 & (1 << d.index()) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: DimSet) -> DimSet {
        DimSet(self.0 | other.0)
    }

    /// Its dimensions in canonical order.
    pub fn dims(self) -> impl Iterator<Item = Dimension> {
        Dimension::ALL.into_iter().filter(move |d| self.contains(*d))
    }

    /// The value of a row with `values`: each dimension's value ([`NONE`] if empty),
    /// joined by `|` (a `|` or `%` inside a value is percent-encoded, so it never splits).
    pub fn value_of<V: AsRef<str>>(self, values: &[V; 3]) -> String {
        let mut out = String::new();
        self.write_value(values, &mut out);
        out
    }

    /// [`DimSet::value_of`] into `out` (cleared first), for a caller reusing one buffer.
    pub fn write_value<V: AsRef<str>>(self, values: &[V; 3], out: &mut String) {
        out.clear();
        for (i, d) in self.dims().enumerate() {
            if i > 0 {
                out.push('|');
            }
            let v = values[d.index()].as_ref();
            if v.is_empty() {
                out.push_str(NONE);
            } else {
                escape_into(out, v);
            }
        }
    }

    /// The value of the per-dimension values `parts` (in canonical order), as
    /// [`DimSet::value_of`] writes it.
    pub fn value_from(self, parts: &[&str]) -> String {
        let mut values = DimValues::default();
        for (d, v) in self.dims().zip(parts) {
            values[d.index()] = v.to_string();
        }
        self.value_of(&values)
    }

    /// The breakdown key of `value` in this set: `country=DE`.
    pub fn key(self, value: &str) -> String {
        format!("{self}={value}")
    }

    /// What every key of this set starts with.
    pub fn key_prefix(self) -> String {
        format!("{self}=")
    }
}

impl fmt::Display for DimSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.dims().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(d.name())?;
        }
        Ok(())
    }
}

fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '%' => out.push_str("%25"),
            '|' => out.push_str("%7C"),
            c => out.push(c),
        }
    }
}

/// The values of a set's value, one per dimension in canonical order (the inverse of
/// [`DimSet::value_of`]).
pub fn split_value(value: &str) -> Vec<String> {
    value.split('|').map(|p| p.replace("%7C", "|").replace("%25", "%")).collect()
}

/// The configured breakdowns: the sets that get lists, and how many distinct values each
/// may have.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Breakdowns {
    pub sets: Vec<DimSet>,
    pub max_values: usize,
}

impl Default for Breakdowns {
    fn default() -> Self {
        Breakdowns {
            sets: vec![DimSet::of(&[Dimension::Country]), DimSet::of(&[Dimension::Category])],
            max_values: DEFAULT_MAX_VALUES,
        }
    }
}

impl Breakdowns {
    /// No breakdowns: only the global lists.
    pub fn none() -> Breakdowns {
        Breakdowns { sets: Vec::new(), max_values: DEFAULT_MAX_VALUES }
    }

    /// From the configured names (`["country", "country,category"]`); a set named twice
    /// is an error.
    pub fn parse(names: &[String], max_values: usize) -> Result<Breakdowns, String> {
        if max_values == 0 {
            return Err("breakdown_max_values must be at least 1".into());
        }
        let mut sets = Vec::with_capacity(names.len());
        for n in names {
            let set = DimSet::parse(n)?;
            if sets.contains(&set) {
                return Err(format!("breakdown {n:?} is configured twice"));
            }
            sets.push(set);
        }
        Ok(Breakdowns { sets, max_values })
    }

    /// The dimensions some set uses: the ones aggregated rows keep.
    pub fn kept(&self) -> DimSet {
        self.sets.iter().fold(DimSet::EMPTY, |a, s| a.union(*s))
    }

    /// The sets' names, as configured: how the store records what its lists cover.
    pub fn names(&self) -> Vec<String> {
        self.sets.iter().map(DimSet::to_string).collect()
    }

    /// The configured set of exactly `dims`, if any.
    pub fn find(&self, dims: DimSet) -> Option<DimSet> {
        self.sets.iter().copied().find(|s| *s == dims)
    }
}

/// Parses a breakdown key (`country,category=DE|toys`) into its set and value; `None`
/// for the global key `""` or one that is not well formed.
pub fn parse_key(key: &str) -> Option<(DimSet, &str)> {
    let (set, value) = key.split_once('=')?;
    Some((DimSet::parse(set).ok()?, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_parse_into_canonical_order_and_name_their_values() {
        let set = DimSet::parse("category, country").unwrap();
        assert_eq!(set.to_string(), "country,category");
        let mut values = DimValues::default();
        values[Dimension::Country.index()] = "DE".into();
        values[Dimension::City.index()] = "Berlin".into();
        assert_eq!(set.value_of(&values), "DE|(none)");
        assert_eq!(set.key(&set.value_of(&values)), "country,category=DE|(none)");
        assert_eq!(parse_key("country,category=DE|(none)"), Some((set, "DE|(none)")));
        assert_eq!(parse_key(""), None);
        values[Dimension::Category.index()] = "a|b%c".into();
        let v = set.value_of(&values);
        assert_eq!(v, "DE|a%7Cb%25c");
        assert_eq!(split_value(&v), ["DE", "a|b%c"]);
        assert_eq!(set.value_from(&["DE", "a|b%c"]), v);
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        assert!(DimSet::parse("country,shoe").unwrap_err().contains("unknown dimension \"shoe\""));
        assert!(DimSet::parse("city,city").unwrap_err().contains("twice"));
        let names = ["country".to_string(), "country".to_string()];
        assert!(Breakdowns::parse(&names, 10).unwrap_err().contains("configured twice"));
        assert!(Breakdowns::parse(&[], 0).is_err());
        let b = Breakdowns::parse(&["city".into(), "country,category".into()], 5).unwrap();
        assert_eq!(b.kept(), DimSet::of(&Dimension::ALL));
        assert_eq!(b.names(), ["city", "country,category"]);
        assert_eq!(Breakdowns::none().kept(), DimSet::EMPTY);
    }
}
