//! Terminal output shared by the commands: progress bars (hidden when
//! stderr is not a terminal), periodic plain-text progress lines for logs,
//! rates with sane precision, and aligned tables.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// Whether stderr is a terminal (progress bars are drawn only then).
pub fn is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// A rate for people: three significant figures at most ("109/s", "9.87/s",
/// "0.123/s"), never "109.1449/s".
pub fn rate(per_s: f64) -> String {
    if !per_s.is_finite() || per_s <= 0.0 {
        return "0".into();
    }
    if per_s >= 100.0 {
        format!("{per_s:.0}")
    } else if per_s >= 10.0 {
        format!("{per_s:.1}")
    } else if per_s >= 1.0 {
        format!("{per_s:.2}")
    } else {
        format!("{per_s:.3}")
    }
}

/// A progress bar drawing `template` when `show` and stderr is a terminal;
/// otherwise hidden. `{rate}` in the template is the items per second
/// formatted by [`rate`].
pub fn bar(show: bool, len: u64, template: &str) -> ProgressBar {
    if !show || !is_tty() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", rate(s.per_sec()));
            })
            .progress_chars("=> "),
    );
    b
}

/// Shows autoencoder training progress on `bar`: images loaded, then the
/// batches of each epoch with the running loss. (Epoch ends are the
/// caller's to report.)
pub fn show_training(bar: &ProgressBar, e: &imgsim_pipeline::train::TrainEvent) {
    use imgsim_pipeline::train::TrainEvent;
    match *e {
        TrainEvent::Loading { done, total } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message("loading images");
        }
        TrainEvent::Batch {
            epoch,
            epochs,
            batch,
            batches,
            loss,
        } => {
            bar.set_length(batches as u64);
            bar.set_position(batch as u64);
            bar.set_message(format!("epoch {epoch}/{epochs} loss {loss:.4}"));
        }
        TrainEvent::Epoch { .. } => {}
    }
}

/// Plain progress lines for logs (stderr not a terminal): at most one
/// every `every`, plus the last one.
pub struct LogLines {
    show: bool,
    every: Duration,
    last: Mutex<Option<Instant>>,
}

impl LogLines {
    /// Lines when `show` and stderr is not a terminal (a bar is drawn otherwise).
    pub fn new(show: bool, every: Duration) -> LogLines {
        LogLines {
            show: show && !is_tty(),
            every,
            last: Mutex::new(None),
        }
    }

    /// Prints `line()` if a line is due (or `last` is set).
    pub fn maybe(&self, last: bool, line: impl FnOnce() -> String) {
        if !self.show {
            return;
        }
        let mut l = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let due = l.is_none_or(|t| t.elapsed() >= self.every);
        if due || last {
            eprintln!("{}", line());
            *l = Some(Instant::now());
        }
    }
}

/// A table of left- or right-aligned columns, printed to stdout.
pub struct Table {
    header: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles; `right[i]` right-aligns column `i`.
    pub fn new(header: &[&str], right: &[bool]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            right: right.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, columns separated by two spaces; the last column
    /// is not padded.
    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut width = vec![0; n];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate().take(n) {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width[i] - c.chars().count();
                if self.right.get(i).copied().unwrap_or(false) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                } else if i + 1 < n {
                    line.push_str(c);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str(c);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_have_sane_precision() {
        assert_eq!(rate(109.1449), "109");
        assert_eq!(rate(12.345), "12.3");
        assert_eq!(rate(9.876), "9.88");
        assert_eq!(rate(0.1234), "0.123");
        assert_eq!(rate(f64::NAN), "0");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["rank", "path"], &[true, false]);
        t.row(vec!["1".into(), "a.jpg".into()]);
        t.row(vec!["10".into(), "b.jpg".into()]);
        assert_eq!(t.render(), "rank  path\n   1  a.jpg\n  10  b.jpg\n");
    }
}
