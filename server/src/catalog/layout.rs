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

/// A point on the map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Point {
    /// Horizontal position.
    pub x: f64,
    /// Vertical position (grows away from the stage).
    pub y: f64,
}

/// A whole seat map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LayoutSpec {
    /// Where best-available aims (the stage centre).
    #[serde(default)]
    pub focal: Point,
    /// Sections, in index order.
    pub sections: Vec<SectionSpec>,
}

/// One section: a block of rows of seats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SectionSpec {
    /// Section name, unique in the map.
    pub name: String,
    /// Row range, e.g. `A-Z` or `1-30`.
    pub rows: String,
    /// Seat number range in every row, e.g. `1-40`.
    pub seats: String,
    /// Position of seat 1 of the first row.
    #[serde(default)]
    pub origin: Point,
    /// Distance between neighbouring seats (default 1).
    #[serde(default = "one")]
    pub seat_spacing: f64,
    /// Distance between rows (default 1).
    #[serde(default = "one")]
    pub row_spacing: f64,
    /// Price category per row range; every row needs one.
    pub categories: Vec<CategoryRows>,
    /// Accessible seats.
    #[serde(default)]
    pub accessible: Vec<SeatRange>,
    /// Seats with a restricted view.
    #[serde(default)]
    pub restricted_view: Vec<SeatRange>,
}

fn one() -> f64 {
    1.0
}

/// A price category for a range of rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CategoryRows {
    /// Row range.
    pub rows: String,
    /// Name of a price category of the event.
    pub category: String,
}

/// Some seats of some rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SeatRange {
    /// Row range.
    pub rows: String,
    /// Seat range (all seats when absent).
    #[serde(default)]
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
        c.is_ascii_uppercase()
            .then(|| n * 26 + (c as u32 - 'A' as u32 + 1))
    })
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
            "bad row range {range:?}: use e.g. A-Z, AA-AF or 1-30"
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
    let bad = || SpecError(format!("bad seat range {range:?}: use e.g. 1-40"));
    let (from, to) = range.split_once('-').unwrap_or((range, range));
    let a: i32 = from.trim().parse().map_err(|_| bad())?;
    let b: i32 = to.trim().parse().map_err(|_| bad())?;
    if a < 1 || a > b || b - a >= 10_000 {
        return Err(bad());
    }
    Ok((a..=b).collect())
}

fn in_ranges(ranges: &[SeatRange], row: &str, seat: i32) -> Result<bool, SpecError> {
    for r in ranges {
        if rows(&r.rows)?.iter().any(|x| x == row)
            && match &r.seats {
                Some(s) => seats(s)?.contains(&seat),
                None => true,
            }
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Every seat of the spec, in index order.
pub fn expand(spec: &LayoutSpec) -> Result<Vec<SeatPlan>, SpecError> {
    if spec.sections.is_empty() {
        return Err(SpecError("a seat map needs at least one section".into()));
    }
    let mut names = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (s, section) in spec.sections.iter().enumerate() {
        if section.name.trim().is_empty() || !names.insert(section.name.as_str()) {
            return Err(SpecError(format!(
                "section names must be non-empty and unique ({:?})",
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
        let mut category_of = Vec::with_capacity(row_labels.len());
        for row in &row_labels {
            let mut found = None;
            for c in &section.categories {
                if rows(&c.rows)?.iter().any(|r| r == row) {
                    found = Some(c.category.clone());
                    break;
                }
            }
            let Some(category) = found else {
                return Err(SpecError(format!(
                    "row {row} of section {} has no price category",
                    section.name
                )));
            };
            category_of.push(category);
        }
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
                    accessible: in_ranges(&section.accessible, row, n)?,
                    restricted_view: in_ranges(&section.restricted_view, row, n)?,
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
