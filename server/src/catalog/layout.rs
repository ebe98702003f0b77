//! The compact layout spec an operator sends to create a whole seat map at once, and its
//! expansion into seats.
//!
//! ```json
//! {"focal": {"x": 0, "y": 0},
//!  "sections": [{"name": "Stalls", "rows": "A-Z", "seats": "1-40",
//!                "origin": {"x": -20, "y": 5}, "seat_spacing": 1.0, "row_spacing": 1.2,
//!                "categories": [{"rows": "A-F", "category": "Premium"},
//!                               {"rows": "G-Z", "category": "Standard"}],
//!                "accessible": [{"rows": "A", "seats": "1-4"}]}]}
//! ```
//!
//! Rows are letter ranges (`A-Z`, `AA-AF`) or number ranges (`1-30`); seats are number ranges.
//! Seat `n` of the row at position `r` (0 for the first row) sits at
//! `(origin.x + (n - 1) * seat_spacing, origin.y + r * row_spacing)`. Seat indexes run from 0
//! in spec order: sections as listed, rows in order, seats ascending. Indexes are how the
//! booking engine and the live seat map name seats, so they are dense.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most seats one map may have.
pub const MAX_SEATS: usize = 100_000;

/// Farthest a point may lie from the origin on either axis.
pub const MAX_COORDINATE: f64 = 1_000_000.0;
/// Largest distance between neighbouring seats or rows, either way.
pub const MAX_SPACING: f64 = 1_000.0;

/// A point on the map; each coordinate within ±1,000,000.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Point {
    /// Horizontal position.
    #[schema(minimum = -1_000_000, maximum = 1_000_000)]
    pub x: f64,
    /// Vertical position (grows away from the stage).
    #[schema(minimum = -1_000_000, maximum = 1_000_000)]
    pub y: f64,
}

/// A whole seat map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LayoutSpec {
    /// Where best-available aims (the stage centre).
    #[serde(default)]
    pub focal: Point,
    /// Sections, in index order: 1 to 500.
    #[schema(min_items = 1, max_items = 500)]
    pub sections: Vec<SectionSpec>,
}

/// One section: a block of rows of seats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SectionSpec {
    /// Section name, unique in the map.
    #[schema(schema_with = marquee_protocol::text::schema::label)]
    pub name: String,
    /// Row range, e.g. `A-Z`, `AA-AF` or `1-30` (at most 1,000 rows, first to last).
    #[schema(
        pattern = r"^\s*([A-Z]{1,3}|[1-9][0-9]{0,3})(\s*-\s*([A-Z]{1,3}|[1-9][0-9]{0,3}))?\s*$"
    )]
    pub rows: String,
    /// Seat number range in every row, e.g. `1-40` (at most 10,000 seats, first to last).
    #[schema(pattern = r"^\s*[1-9][0-9]{0,4}(\s*-\s*[1-9][0-9]{0,4})?\s*$")]
    pub seats: String,
    /// Position of seat 1 of the first row.
    #[serde(default)]
    pub origin: Point,
    /// Distance between neighbouring seats, within ±1,000 (default 1).
    #[serde(default = "one")]
    #[schema(minimum = -1_000, maximum = 1_000)]
    pub seat_spacing: f64,
    /// Distance between rows, within ±1,000 (default 1).
    #[serde(default = "one")]
    #[schema(minimum = -1_000, maximum = 1_000)]
    pub row_spacing: f64,
    /// Price category per row range; every row needs one. At most 1,000.
    #[schema(max_items = 1_000)]
    pub categories: Vec<CategoryRows>,
    /// Accessible seats. At most 1,000 ranges.
    #[serde(default)]
    #[schema(max_items = 1_000)]
    pub accessible: Vec<SeatRange>,
    /// Seats with a restricted view. At most 1,000 ranges.
    #[serde(default)]
    #[schema(max_items = 1_000)]
    pub restricted_view: Vec<SeatRange>,
}

fn one() -> f64 {
    1.0
}

/// A price category for a range of rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryRows {
    /// Row range.
    #[schema(
        pattern = r"^\s*([A-Z]{1,3}|[1-9][0-9]{0,3})(\s*-\s*([A-Z]{1,3}|[1-9][0-9]{0,3}))?\s*$"
    )]
    pub rows: String,
    /// Name of a price category of the event.
    #[schema(schema_with = marquee_protocol::text::schema::name)]
    pub category: String,
}

/// Some seats of some rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatRange {
    /// Row range.
    #[schema(
        pattern = r"^\s*([A-Z]{1,3}|[1-9][0-9]{0,3})(\s*-\s*([A-Z]{1,3}|[1-9][0-9]{0,3}))?\s*$"
    )]
    pub rows: String,
    /// Seat range (all seats when absent).
    #[serde(default)]
    #[schema(pattern = r"^\s*[1-9][0-9]{0,4}(\s*-\s*[1-9][0-9]{0,4})?\s*$")]
    pub seats: Option<String>,
}

/// One seat of an expanded spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SeatPlan {
    /// Index into [`LayoutSpec::sections`].
    pub section: usize,
    /// Row label.
    pub row: String,
    /// Seat number.
    pub number: i32,
    /// Seat index in the map.
    pub index: i32,
    /// Position.
    pub x: f64,
    /// Position.
    pub y: f64,
    /// Category name.
    pub category: String,
    /// Accessible seat.
    pub accessible: bool,
    /// Restricted view.
    pub restricted_view: bool,
}

/// Why a spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

fn letters_to_number(s: &str) -> Option<u32> {
    s.chars().try_fold(0u32, |n, c| {
        if !c.is_ascii_uppercase() {
            return None;
        }
        // Checked: a long run of letters must be a bad range, not an overflow.
        n.checked_mul(26)?.checked_add(c as u32 - 'A' as u32 + 1)
    })
}

/// Whether a point lies within [`MAX_COORDINATE`] on both axes.
fn on_map(p: Point) -> bool {
    p.x.abs() <= MAX_COORDINATE && p.y.abs() <= MAX_COORDINATE
}

fn number_to_letters(mut n: u32) -> String {
    let mut out = Vec::new();
    while n > 0 {
        let d = (n - 1) % 26;
        out.push((b'A' + d as u8) as char);
        n = (n - 1) / 26;
    }
    out.iter().rev().collect()
}

/// Expands a row range (`A-C`, `AA-AB`, `1-3`, or a single row) into labels.
pub fn rows(range: &str) -> Result<Vec<String>, SpecError> {
    let bad = || {
        SpecError(format!(
            "bad row range {}: use e.g. A-Z, AA-AF or 1-30",
            marquee_protocol::text::quoted(range)
        ))
    };
    let (from, to) = range.split_once('-').unwrap_or((range, range));
    let (from, to) = (from.trim(), to.trim());
    if let (Ok(a), Ok(b)) = (from.parse::<u32>(), to.parse::<u32>()) {
        if a == 0 || a > b || b - a >= 1000 {
            return Err(bad());
        }
        return Ok((a..=b).map(|n| n.to_string()).collect());
    }
    let (Some(a), Some(b)) = (letters_to_number(from), letters_to_number(to)) else {
        return Err(bad());
    };
    if from.is_empty() || a > b || b - a >= 1000 {
        return Err(bad());
    }
    Ok((a..=b).map(number_to_letters).collect())
}

/// Expands a seat range (`1-40` or one number).
pub fn seats(range: &str) -> Result<Vec<i32>, SpecError> {
    let bad = || {
        SpecError(format!(
            "bad seat range {}: use e.g. 1-40",
            marquee_protocol::text::quoted(range)
        ))
    };
    let (from, to) = range.split_once('-').unwrap_or((range, range));
    let a: i32 = from.trim().parse().map_err(|_| bad())?;
    let b: i32 = to.trim().parse().map_err(|_| bad())?;
    if a < 1 || a > b || b - a >= 10_000 {
        return Err(bad());
    }
    Ok((a..=b).collect())
}

/// Most sections a map may have, and most category rows or seat ranges a section may list:
/// enough for any hall, and a bound on the work a spec can ask for.
pub const MAX_SECTIONS: usize = 500;
/// See [`MAX_SECTIONS`].
pub const MAX_RANGES: usize = 1_000;

/// The seats `ranges` mark, per row label: sorted, merged seat intervals (a range without
/// seats marks the whole row). Built once per section, so marking every seat costs a binary
/// search, not a pass over every range.
fn marked(
    ranges: &[SeatRange],
    what: &str,
) -> Result<std::collections::HashMap<String, Vec<(i32, i32)>>, SpecError> {
    if ranges.len() > MAX_RANGES {
        return Err(SpecError(format!(
            "{what} lists at most {MAX_RANGES} ranges"
        )));
    }
    let mut by_row: std::collections::HashMap<String, Vec<(i32, i32)>> =
        std::collections::HashMap::new();
    for r in ranges {
        let span = match &r.seats {
            Some(s) => {
                let numbers = seats(s)?;
                (numbers[0], numbers[numbers.len() - 1])
            }
            None => (i32::MIN, i32::MAX),
        };
        for row in rows(&r.rows)? {
            by_row.entry(row).or_default().push(span);
        }
    }
    for spans in by_row.values_mut() {
        spans.sort_unstable();
        let mut merged: Vec<(i32, i32)> = Vec::with_capacity(spans.len());
        for &(lo, hi) in spans.iter() {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        *spans = merged;
    }
    Ok(by_row)
}

/// Whether seat `n` of `row` is among the `marked` seats.
fn is_marked(
    marked: &std::collections::HashMap<String, Vec<(i32, i32)>>,
    row: &str,
    n: i32,
) -> bool {
    marked.get(row).is_some_and(|spans| {
        let at = spans.partition_point(|&(lo, _)| lo <= n);
        at > 0 && spans[at - 1].1 >= n
    })
}

/// Every seat of the spec, in index order, in time linear in the seats (and the ranges) it
/// names. A spec with several faults reports the first in spec order: sections as listed, and
/// in a section its name, rows, seats, categories, then the accessible and restricted ranges.
pub fn expand(spec: &LayoutSpec) -> Result<Vec<SeatPlan>, SpecError> {
    if spec.sections.is_empty() {
        return Err(SpecError("a seat map needs at least one section".into()));
    }
    if spec.sections.len() > MAX_SECTIONS {
        return Err(SpecError(format!(
            "a seat map has at most {MAX_SECTIONS} sections"
        )));
    }
    if !on_map(spec.focal) {
        return Err(SpecError(format!(
            "focal must lie within ±{MAX_COORDINATE} on both axes"
        )));
    }
    let mut names = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (s, section) in spec.sections.iter().enumerate() {
        let named = marquee_protocol::text::required(
            "section name",
            &section.name,
            marquee_protocol::text::MAX_LABEL_LEN,
        );
        if named.is_err() || !names.insert(section.name.as_str()) {
            return Err(SpecError(format!(
                "section names must be unique, 1 to {} characters without control characters ({})",
                marquee_protocol::text::MAX_LABEL_LEN,
                marquee_protocol::text::quoted(&section.name)
            )));
        }
        if !on_map(section.origin)
            || section.seat_spacing.abs() > MAX_SPACING
            || section.row_spacing.abs() > MAX_SPACING
        {
            return Err(SpecError(format!(
                "section {}: origin within ±{MAX_COORDINATE} and spacings within ±{MAX_SPACING}",
                section.name
            )));
        }
        let row_labels = rows(&section.rows)?;
        let numbers = seats(&section.seats)?;
        if row_labels.len() * numbers.len() + out.len() > MAX_SEATS {
            return Err(SpecError(format!(
                "a seat map holds at most {MAX_SEATS} seats"
            )));
        }
        if section.categories.len() > MAX_RANGES {
            return Err(SpecError(format!(
                "a section lists at most {MAX_RANGES} category ranges"
            )));
        }
        // The first category entry naming a row wins, as listed.
        let mut category_of_row: std::collections::HashMap<String, &str> =
            std::collections::HashMap::new();
        for c in &section.categories {
            for row in rows(&c.rows)? {
                category_of_row.entry(row).or_insert(c.category.as_str());
            }
        }
        let mut category_of = Vec::with_capacity(row_labels.len());
        for row in &row_labels {
            let Some(category) = category_of_row.get(row) else {
                return Err(SpecError(format!(
                    "row {row} of section {} has no price category",
                    section.name
                )));
            };
            category_of.push((*category).to_owned());
        }
        let accessible = marked(&section.accessible, "accessible")?;
        let restricted = marked(&section.restricted_view, "restricted_view")?;
        for (r, row) in row_labels.iter().enumerate() {
            for &n in &numbers {
                out.push(SeatPlan {
                    section: s,
                    row: row.clone(),
                    number: n,
                    index: out.len() as i32,
                    x: section.origin.x + f64::from(n - 1) * section.seat_spacing,
                    y: section.origin.y + r as f64 * section.row_spacing,
                    category: category_of[r].clone(),
                    accessible: is_marked(&accessible, row, n),
                    restricted_view: is_marked(&restricted, row, n),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> LayoutSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn row_ranges_read_letters_past_z_and_numbers() {
        assert_eq!(rows("A-C").unwrap(), ["A", "B", "C"]);
        assert_eq!(rows("Y-AB").unwrap(), ["Y", "Z", "AA", "AB"]);
        assert_eq!(rows("7").unwrap(), ["7"]);
        assert_eq!(rows("1-3").unwrap(), ["1", "2", "3"]);
        assert!(rows("C-A").is_err());
        assert!(rows("a-c").is_err());
        assert!(seats("0-4").is_err());
        assert!(rows("ZZZZZZZZ").is_err(), "too many letters is a bad range");
    }

    #[test]
    fn seats_are_indexed_densely_in_spec_order_with_their_categories() {
        let plan = expand(&spec(serde_json::json!({
            "sections": [
                {"name": "Stalls", "rows": "A-B", "seats": "1-3", "origin": {"x": 10, "y": 2},
                 "row_spacing": 2.0,
                 "categories": [{"rows": "A", "category": "Premium"}, {"rows": "B", "category": "Standard"}],
                 "accessible": [{"rows": "B", "seats": "3"}]},
                {"name": "Circle", "rows": "1", "seats": "1-2", "categories": [{"rows": "1", "category": "Balcony"}]}
            ]
        })))
        .unwrap();
        assert_eq!(plan.len(), 8);
        assert!(plan.iter().enumerate().all(|(i, s)| s.index == i as i32));
        assert_eq!(
            (plan[0].x, plan[0].y, plan[0].category.as_str()),
            (10.0, 2.0, "Premium")
        );
        assert_eq!(
            (plan[5].row.as_str(), plan[5].number, plan[5].y),
            ("B", 3, 4.0)
        );
        assert!(plan[5].accessible && !plan[4].accessible);
        assert_eq!((plan[6].section, plan[6].category.as_str()), (1, "Balcony"));
    }

    #[test]
    fn many_ranges_expand_in_linear_time_and_too_many_are_refused() {
        // A thousand one-seat accessible ranges in one row of a thousand seats: each seat is
        // one binary search, not a pass over a thousand ranges.
        let accessible: Vec<serde_json::Value> = (1..=1000)
            .map(|n| serde_json::json!({"rows": "A", "seats": n.to_string()}))
            .collect();
        let plan = expand(&spec(serde_json::json!({
            "sections": [{"name": "S", "rows": "A", "seats": "1-1000",
                          "categories": [{"rows": "A", "category": "X"}],
                          "accessible": accessible}]
        })))
        .unwrap();
        assert!(plan.iter().all(|s| s.accessible));
        let too_many: Vec<serde_json::Value> = (0..=1000)
            .map(|_| serde_json::json!({"rows": "A"}))
            .collect();
        let refused = expand(&spec(serde_json::json!({
            "sections": [{"name": "S", "rows": "A", "seats": "1-3",
                          "categories": [{"rows": "A", "category": "X"}],
                          "restricted_view": too_many}]
        })));
        assert_eq!(
            refused.unwrap_err().0,
            "restricted_view lists at most 1000 ranges"
        );
        let nul = expand(&spec(serde_json::json!({
            "sections": [{"name": "S\u{0}", "rows": "A", "seats": "1",
                          "categories": [{"rows": "A", "category": "X"}]}]
        })));
        assert!(nul.unwrap_err().0.contains("without control characters"));
    }

    #[test]
    fn a_row_without_a_category_or_too_many_seats_is_refused() {
        let missing = expand(&spec(serde_json::json!({
            "sections": [{"name": "S", "rows": "A-C", "seats": "1-3",
                          "categories": [{"rows": "A-B", "category": "X"}]}]
        })));
        assert_eq!(
            missing.unwrap_err().0,
            "row C of section S has no price category"
        );
        let huge = expand(&spec(serde_json::json!({
            "sections": [{"name": "S", "rows": "1-400", "seats": "1-300",
                          "categories": [{"rows": "1-400", "category": "X"}]}]
        })));
        assert!(huge.unwrap_err().0.contains("at most 100000 seats"));
    }
}
