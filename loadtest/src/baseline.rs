//! Figures that got worse: a freshly written `BENCHMARKS.md` against the committed one.
//!
//! `scripts/bench` keeps the committed file, writes the new one, and appends what this module
//! finds: every figure more than [`TOLERANCE`] worse than the same figure before. A figure is a
//! number in a Markdown table cell, named by the section it is under, its row (the first cell,
//! and the second when that column is `target`) and its column; a cell such as
//! `28.0 / 43.5 / 409.1 ms` holds several, named by the parts of its column's header when it
//! has as many (`p50 / p99 / max`), by their place otherwise. Digits in a row's name are
//! ignored, so a row that states a measured count (`8 gates at once (2500 scans, 3944
//! scans/s)`) is the same row in both files.
//!
//! Which way is better is read from the column's header, or for a `Result` column from the
//! row and the unit: rates (`/s`, `per second`, `sold`, `delivered`) are better higher;
//! times, memory, CPU and counts of what went wrong (`failed`, `lost`, `dup`, `reordered`)
//! better lower. Anything else (sizes of the run, row counts, verdicts) is not compared.

use std::collections::HashMap;

/// How much worse a figure may get before it is flagged: 10 %.
pub const TOLERANCE: f64 = 0.10;

/// Which way a figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

/// One figure of a document.
#[derive(Debug, Clone)]
struct Figure {
    /// Its name as the document writes it (the key leaves the row's digits out).
    shown: String,
    value: f64,
    better: Better,
    unit: String,
}

/// Every comparable figure of a Markdown document, by name.
fn figures(doc: &str) -> HashMap<String, Figure> {
    let mut out: HashMap<String, Figure> = HashMap::new();
    let mut seen_twice: Vec<String> = Vec::new();
    let mut heading = String::new();
    let mut header: Option<Vec<String>> = None;
    for line in doc.lines() {
        let line = line.trim();
        if let Some(title) = line.strip_prefix('#') {
            heading = title.trim_start_matches('#').trim().to_owned();
            header = None;
            continue;
        }
        if !line.starts_with('|') {
            header = None;
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect();
        let Some(columns) = &header else {
            header = Some(cells);
            continue;
        };
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue; // the separator row
        }
        let mut row = without_digits(&cells[0]);
        let keyed_by_target = columns.get(1).is_some_and(|c| c == "target");
        if keyed_by_target && let Some(target) = cells.get(1) {
            row = format!("{row} / {target}");
        }
        let skip = if keyed_by_target { 2 } else { 1 };
        for (column, cell) in columns.iter().zip(&cells).skip(skip) {
            let Some(better) = direction(column, &cells[0], cell) else {
                continue;
            };
            let values = numbers(cell);
            let parts = parts(column)
                .filter(|p| p.len() == values.len())
                .or_else(|| parts(&cells[0]).filter(|p| p.len() == values.len()));
            for (i, value) in values.iter().enumerate() {
                let part = match &parts {
                    _ if values.len() == 1 => String::new(),
                    Some(parts) => format!(" {}", parts[i]),
                    None => format!(" #{}", i + 1),
                };
                let name = format!("{heading} › {row} › {column}{part}");
                let shown_row = match cells.get(1) {
                    Some(target) if keyed_by_target => format!("{} / {target}", cells[0]),
                    _ => cells[0].clone(),
                };
                let figure = Figure {
                    shown: format!("{heading} › {shown_row} › {column}{part}"),
                    value: *value,
                    better,
                    unit: unit(column, cell),
                };
                if out.insert(name.clone(), figure).is_some() {
                    seen_twice.push(name);
                }
            }
        }
    }
    // A name that is not unique names no one figure.
    for name in seen_twice {
        out.remove(&name);
    }
    out
}

/// Which way the figures of a cell improve, from its column (and row, for a `Result`).
fn direction(column: &str, row: &str, cell: &str) -> Option<Better> {
    let column = column.to_lowercase();
    let higher = ["/s", "per second", "sold", "delivered"];
    let lower = [
        "ms",
        "rss",
        "kib",
        "mib",
        "cpu",
        "floor",
        "failed",
        "lost",
        "dup",
        "reordered",
        "resume",
        "sell-out",
        "join ack",
        "admit to hold",
        "hold result",
        "checkout to paid",
        "payment to",
        "median",
        "slowest",
        "p50",
        "p99",
    ];
    let words = |text: &str, list: &[&str]| {
        list.iter().any(|w| {
            text.split(|c: char| !c.is_alphanumeric() && !"/-.µ×".contains(c))
                .any(|t| t == *w)
                || (w.contains(' ') || w.contains('/')) && text.contains(w)
        })
    };
    if column == "result" {
        let row = row.to_lowercase();
        let cell = cell.to_lowercase();
        // The unit first: a time is better lower whatever the row says it was measured at.
        return if cell.ends_with(" ms") || cell.ends_with(" s") || cell.contains(" ms (") {
            Some(Better::Lower)
        } else if words(&row, &higher) || cell.ends_with("/s") {
            Some(Better::Higher)
        } else {
            None
        };
    }
    if words(&column, &higher) {
        Some(Better::Higher)
    } else if words(&column, &lower) {
        Some(Better::Lower)
    } else {
        None
    }
}

/// The names of the figures in a cell, from text ending in `p50 / p99 / max` (and perhaps a
/// parenthesis): a header such as `p50 / p99 / max (ms)`, or a row such as `Latency, p50 /
/// p99 / max`.
fn parts(text: &str) -> Option<Vec<String>> {
    let last = text.rsplit(", ").next()?;
    let last = last.split('(').next()?;
    let parts: Vec<String> = last.split(" / ").map(|p| p.trim().to_owned()).collect();
    (parts.len() > 1).then_some(parts)
}

/// The unit to print after a figure, when the cell or its column names one.
fn unit(column: &str, cell: &str) -> String {
    for unit in [" ms", " s", "/s"] {
        if cell.contains(unit) || column.ends_with(unit) {
            return unit.trim().to_owned();
        }
    }
    String::new()
}

/// The numbers in a cell, in order (`1,234` is one number).
fn numbers(cell: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = cell.chars().peekable();
    while let Some(c) = chars.next() {
        let joins =
            c == ',' && !current.is_empty() && chars.peek().is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() || (c == '.' && !current.is_empty()) || joins {
            if c != ',' {
                current.push(c);
            }
        } else if !current.is_empty() {
            out.extend(current.parse::<f64>().ok());
            current.clear();
        }
    }
    out.extend(current.parse::<f64>().ok());
    out
}

fn without_digits(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every figure of `current` more than [`TOLERANCE`] worse than in `baseline`, one line each,
/// worst first.
pub fn regressions(baseline: &str, current: &str) -> Vec<String> {
    let before = figures(baseline);
    let mut worse: Vec<(f64, String)> = figures(current)
        .into_iter()
        .filter_map(|(key, now)| {
            let was = before.get(&key)?;
            let change = match now.better {
                Better::Lower if now.value > was.value * (1.0 + TOLERANCE) => {
                    now.value / was.value - 1.0
                }
                Better::Higher if now.value < was.value * (1.0 - TOLERANCE) => {
                    1.0 - now.value / was.value
                }
                _ => return None,
            };
            let (unit, way) = (
                now.unit,
                match now.better {
                    Better::Lower => "lower is better",
                    Better::Higher => "higher is better",
                },
            );
            let by = if change.is_finite() {
                format!("{:.0} % worse", change * 100.0)
            } else {
                "was 0".to_owned()
            };
            Some((
                if change.is_finite() { change } else { f64::MAX },
                format!(
                    "{}: {} → {}{}{unit} ({by}; {way})",
                    now.shown,
                    was.value,
                    now.value,
                    if unit.is_empty() { "" } else { " " },
                ),
            ))
        })
        .collect();
    worse.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    worse.into_iter().map(|(_, line)| line).collect()
}

/// The section `scripts/bench` appends to `BENCHMARKS.md`.
pub fn section(baseline: &str, current: &str) -> String {
    let found = regressions(baseline, current);
    let mut out = String::from("\n## Against the committed BENCHMARKS.md\n\n");
    if found.is_empty() {
        out.push_str(&format!(
            "No figure is more than {:.0} % worse than in the file this run replaced.\n",
            TOLERANCE * 100.0
        ));
    } else {
        out.push_str(&format!(
            "{} figures are more than {:.0} % worse than in the file this run replaced (same machine? the table's first lines say which it was):\n\n",
            found.len(),
            TOLERANCE * 100.0
        ));
        for line in found {
            out.push_str(&format!("- **{line}**\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# Benchmarks

| scenario | target | nodes | RSS/conn (KiB) | delivered/s | p99 ms | lost |
|---|---|---|---|---|---|---|
| connections | marquee | 2 | 6.37 | – | – | 0 |
| fanout | marquee | 2 | – | 20000 | 80.0 | 0 |
| fanout | socketio | 2 | – | 20000 | 150.0 | 0 |

## Booking engine

| Measure | Result | Target |
|---|---|---|
| Committed seat holds per second (median of 3) | 25784 | ≥ 20,000 |
| Command-to-result latency, p50 / p99 / max | 28.0 / 43.5 / 409.1 ms | p99 ≤ 50 ms |
| Scan that admits, 8 gates at once (2500 scans, 3944 scans/s) | 1.8 ms | – |

### Joins arriving at 40000/s

| Measure | Result | Target |
|---|---|---|
| Join acknowledgement over WebSockets (8000 buyers), p50 / p99 / max | 1.6 / 54.0 / 123.5 ms | p99 ≤ 100 ms |
";

    #[test]
    fn the_same_figures_are_no_regression() {
        assert!(regressions(BEFORE, BEFORE).is_empty());
    }

    #[test]
    fn a_figure_worse_by_more_than_a_tenth_is_flagged_whichever_way_is_better() {
        let after = BEFORE
            .replace("| 6.37 |", "| 7.93 |") // memory: lower is better
            .replace("| 20000 | 80.0 |", "| 17000 | 80.0 |") // rate: higher is better
            .replace("28.0 / 43.5 / 409.1 ms", "28.0 / 52.0 / 409.1 ms")
            .replace("1.6 / 54.0 / 123.5 ms", "1.6 / 149.5 / 123.5 ms")
            .replace("| 0 |\n| fanout | socketio", "| 3 |\n| fanout | socketio");
        let found = regressions(BEFORE, &after);
        assert_eq!(found.len(), 5, "{found:#?}");
        let has = |text: &str| found.iter().any(|l| l.contains(text));
        assert!(has(
            "Benchmarks › connections / marquee › RSS/conn (KiB): 6.37 → 7.93"
        ));
        assert!(has("fanout / marquee › delivered/s: 20000 → 17000"));
        assert!(has(
            "Command-to-result latency, p50 / p99 / max › Result p99: 43.5 → 52 ms"
        ));
        assert!(has("Joins arriving at 40000/s › Join acknowledgement"));
        assert!(has("fanout / marquee › lost: 0 → 3 (was 0"));
        // Worst first: the lost messages (from 0), then the join's p99 (+177 %).
        assert!(found[0].contains("lost"));
        assert!(found[1].contains("149.5"));
    }

    #[test]
    fn a_figure_within_a_tenth_or_better_is_not_flagged() {
        let after = BEFORE
            .replace("| 6.37 |", "| 6.90 |") // +8 %
            .replace("| 20000 | 80.0 |", "| 30000 | 60.0 |") // better both ways
            .replace(
                "(2500 scans, 3944 scans/s) | 1.8 ms",
                "(2500 scans, 4100 scans/s) | 1.9 ms",
            );
        assert_eq!(regressions(BEFORE, &after), Vec::<String>::new());
    }

    #[test]
    fn a_row_that_names_measured_counts_is_the_same_row_in_both_runs() {
        let after = BEFORE.replace(
            "(2500 scans, 3944 scans/s) | 1.8 ms",
            "(2500 scans, 4100 scans/s) | 2.5 ms",
        );
        let found = regressions(BEFORE, &after);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("1.8 → 2.5 ms"));
    }

    #[test]
    fn cells_are_read_as_numbers_with_their_parts() {
        assert_eq!(numbers("28.0 / 43.5 / 409.1 ms"), vec![28.0, 43.5, 409.1]);
        assert_eq!(numbers("19,982 sold"), vec![19982.0]);
        assert_eq!(numbers("–"), Vec::<f64>::new());
        assert_eq!(numbers("45.7 ms (decide 4.9 ms)"), vec![45.7, 4.9]);
    }
}
