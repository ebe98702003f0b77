//! Choosing seats for a group: the best available block, and the nearest equivalent block
//! when explicitly requested seats are taken.
//!
//! A group stays in one row and adjacent whenever some row can seat it; among such blocks,
//! those that leave no single seat stranded next to them (an orphan nobody can buy with a
//! friend) come first, and among those the block closest to the focal point (the stage)
//! wins. When no row can seat the group, it is split into as few adjacent pieces as
//! possible, taken from the rows nearest the focal point.
//!
//! The functions are pure: the worker that owns an event calls them on its in-memory state.

/// One seat as the chooser sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seat {
    /// Caller's handle for the seat (an index into its own table).
    pub id: u32,
    /// Position on the map.
    pub x: f64,
    /// Position on the map.
    pub y: f64,
    /// Price category.
    pub category: u32,
}

/// A row: its seats in physical order, so that neighbours in the slice are adjacent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Seats from one end of the row to the other.
    pub seats: Vec<Seat>,
}

/// A candidate block and why it ranks where it does.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    row: usize,
    start: usize,
    orphans: u8,
    distance: f64,
}

impl Candidate {
    /// Fewer orphans first, then nearer, then a stable order by position.
    fn better_than(&self, other: &Candidate) -> bool {
        (self.orphans, self.distance, self.row, self.start)
            .partial_cmp(&(other.orphans, other.distance, other.row, other.start))
            .is_some_and(|o| o.is_lt())
    }
}

fn centroid_distance(seats: &[Seat], focal: (f64, f64)) -> f64 {
    let n = seats.len() as f64;
    let (sx, sy) = seats
        .iter()
        .fold((0.0, 0.0), |(x, y), s| (x + s.x, y + s.y));
    let (cx, cy) = (sx / n, sy / n);
    ((cx - focal.0).powi(2) + (cy - focal.1).powi(2)).sqrt()
}

/// Maximal runs of adjacent seats in a row that are free and of the category:
/// `(start, len)` pairs.
fn runs(row: &Row, category: u32, free: &impl Fn(u32) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, seat) in row.seats.iter().enumerate() {
        let ok = seat.category == category && free(seat.id);
        match (ok, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i - s));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, row.seats.len() - s));
    }
    out
}

/// The best block of `quantity` free seats of `category`, or `None` when fewer are free.
pub(crate) fn best_available(
    rows: &[Row],
    category: u32,
    quantity: usize,
    focal: (f64, f64),
    free: impl Fn(u32) -> bool,
) -> Option<Vec<u32>> {
    if quantity == 0 {
        return Some(Vec::new());
    }
    let mut best: Option<Candidate> = None;
    for (r, row) in rows.iter().enumerate() {
        for (run_start, len) in runs(row, category, &free) {
            if len < quantity {
                continue;
            }
            for offset in 0..=len - quantity {
                let left = offset;
                let right = len - offset - quantity;
                let orphans = u8::from(left == 1) + u8::from(right == 1);
                let start = run_start + offset;
                let candidate = Candidate {
                    row: r,
                    start,
                    orphans,
                    distance: centroid_distance(&row.seats[start..start + quantity], focal),
                };
                if best.as_ref().is_none_or(|b| candidate.better_than(b)) {
                    best = Some(candidate);
                }
            }
        }
    }
    if let Some(b) = best {
        return Some(
            rows[b.row].seats[b.start..b.start + quantity]
                .iter()
                .map(|s| s.id)
                .collect(),
        );
    }
    split(rows, category, quantity, focal, &free)
}

/// No row seats the whole group: take the largest adjacent pieces, nearest first.
fn split(
    rows: &[Row],
    category: u32,
    quantity: usize,
    focal: (f64, f64),
    free: &impl Fn(u32) -> bool,
) -> Option<Vec<u32>> {
    let mut pieces: Vec<(usize, f64, &[Seat])> = rows
        .iter()
        .flat_map(|row| {
            runs(row, category, free)
                .into_iter()
                .map(move |(s, len)| &row.seats[s..s + len])
        })
        .map(|seats| (seats.len(), centroid_distance(seats, focal), seats))
        .collect();
    let total: usize = pieces.iter().map(|p| p.0).sum();
    if total < quantity {
        return None;
    }
    // Larger pieces first (fewer splits), nearer first among equals.
    pieces.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.total_cmp(&b.1)));
    let mut chosen = Vec::with_capacity(quantity);
    for (_, _, seats) in pieces {
        let need = quantity - chosen.len();
        if need == 0 {
            break;
        }
        let take = need.min(seats.len());
        // Within a piece, the seats nearest the focal point.
        let best_start = (0..=seats.len() - take)
            .min_by(|a, b| {
                centroid_distance(&seats[*a..*a + take], focal)
                    .total_cmp(&centroid_distance(&seats[*b..*b + take], focal))
            })
            .unwrap_or(0);
        chosen.extend(seats[best_start..best_start + take].iter().map(|s| s.id));
    }
    Some(chosen)
}

/// When explicitly requested seats are taken: the free block of the same size and category
/// nearest to where the requested seats are, to offer in the error.
pub(crate) fn nearest_equivalent(
    rows: &[Row],
    requested: &[Seat],
    free: impl Fn(u32) -> bool,
) -> Option<Vec<u32>> {
    let first = requested.first()?;
    let n = requested.len() as f64;
    let centre = requested
        .iter()
        .fold((0.0, 0.0), |(x, y), s| (x + s.x / n, y + s.y / n));
    best_available(rows, first.category, requested.len(), centre, free)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// Rows of `width` seats, one category per row unless `mixed`, the focal point in front of
    /// the middle of row 0.
    fn hall(rows: usize, width: usize) -> Vec<Row> {
        (0..rows)
            .map(|r| Row {
                seats: (0..width)
                    .map(|i| Seat {
                        id: (r * width + i) as u32,
                        x: i as f64,
                        y: r as f64 + 1.0,
                        category: 0,
                    })
                    .collect(),
            })
            .collect()
    }

    fn focal(width: usize) -> (f64, f64) {
        ((width as f64 - 1.0) / 2.0, 0.0)
    }

    #[test]
    fn an_empty_hall_seats_a_pair_in_the_middle_of_the_front_row() {
        let rows = hall(5, 10);
        let got = best_available(&rows, 0, 2, focal(10), |_| true).unwrap();
        assert_eq!(got, [4, 5]);
    }

    #[test]
    fn a_block_that_would_strand_one_seat_loses_to_one_that_does_not() {
        // Front row: seats 0..=4 free, the rest taken. A pair at 2,3 (nearest the centre)
        // would strand seat 4; the chooser takes 3,4 instead.
        let rows = hall(2, 10);
        let free = |id: u32| id <= 4 || id >= 10;
        let got = best_available(&rows, 0, 2, (2.5, 0.0), free).unwrap();
        assert_eq!(got, [3, 4]);
    }

    #[test]
    fn a_group_too_big_for_any_row_is_split_into_few_adjacent_pieces() {
        let rows = hall(3, 4);
        let got = best_available(&rows, 0, 6, focal(4), |_| true).unwrap();
        assert_eq!(got.len(), 6);
        // A whole front row and two adjacent seats of the next.
        assert_eq!(&got[..4], &[0, 1, 2, 3]);
        assert_eq!(got[5] - got[4], 1);
        assert!(best_available(&rows, 0, 13, focal(4), |_| true).is_none());
    }

    #[test]
    fn the_nearest_equivalent_block_sits_near_the_taken_one() {
        let rows = hall(10, 20);
        let taken: HashSet<u32> = [105, 106].into();
        let requested = [rows[5].seats[5], rows[5].seats[6]];
        let got = nearest_equivalent(&rows, &requested, |id| !taken.contains(&id)).unwrap();
        assert_eq!(got.len(), 2);
        let row_of = |id: u32| id / 20;
        assert!(
            got.iter()
                .all(|id| row_of(*id) == 5 || row_of(*id).abs_diff(5) == 1)
        );
        assert!(got.iter().all(|id| !taken.contains(id)));
    }

    proptest! {
        #[test]
        fn the_choice_is_valid_and_no_better_block_exists(
            rows in 1usize..6,
            width in 1usize..14,
            quantity in 1usize..6,
            taken in prop::collection::hash_set(0u32..84, 0..40),
        ) {
            let hall = hall(rows, width);
            let free = |id: u32| !taken.contains(&id);
            let focal = focal(width);
            let available = rows * width - taken.iter().filter(|t| (**t as usize) < rows * width).count();
            let got = best_available(&hall, 0, quantity, focal, free);
            let Some(got) = got else {
                prop_assert!(available < quantity);
                return Ok(());
            };
            prop_assert_eq!(got.len(), quantity);
            let distinct: HashSet<u32> = got.iter().copied().collect();
            prop_assert_eq!(distinct.len(), quantity);
            prop_assert!(got.iter().all(|id| free(*id) && (*id as usize) < rows * width));

            // Brute force over every contiguous block in every row.
            let mut best_key: Option<(u8, f64)> = None;
            for row in &hall {
                for (s, len) in runs(row, 0, &free) {
                    if len < quantity { continue; }
                    for off in 0..=len - quantity {
                        let orphans = u8::from(off == 1) + u8::from(len - off - quantity == 1);
                        let d = centroid_distance(&row.seats[s + off..s + off + quantity], focal);
                        let key = (orphans, d);
                        if best_key.is_none_or(|b| key.0 < b.0 || (key.0 == b.0 && key.1 < b.1)) {
                            best_key = Some(key);
                        }
                    }
                }
            }
            if let Some((orphans, distance)) = best_key {
                // One row, adjacent, and as good as the best block.
                let r = got[0] as usize / width;
                prop_assert!(got.iter().all(|id| *id as usize / width == r));
                prop_assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
                let seats: Vec<Seat> = got.iter().map(|id| hall[r].seats[*id as usize % width]).collect();
                let first = got[0] as usize % width;
                let (s, len) = runs(&hall[r], 0, &free).into_iter().find(|(s, len)| first >= *s && first < s + len).unwrap();
                let off = first - s;
                let got_orphans = u8::from(off == 1) + u8::from(len - off - quantity == 1);
                prop_assert_eq!(got_orphans, orphans);
                prop_assert!((centroid_distance(&seats, focal) - distance).abs() < 1e-9);
            }
        }
    }
}
