//! How a sync shows its progress: on a terminal, a bar once the provider says how many
//! items there are (a spinner with counts until then, or when it never does); a plain line
//! per second (and the first page at once) otherwise; or nothing (`latchkey run` logs one
//! line per run instead). Progress goes to stderr; summaries go to stdout.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Counts after a page.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub pages: u64,
    pub fetched: u64,
    pub added: u64,
    /// The stream's size, where the provider says.
    pub total: Option<u64>,
}

/// Where progress goes.
pub enum Progress {
    Bar(ProgressBar),
    Lines { name: String, last: Option<Instant> },
    Quiet,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn for_sync(name: &str) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_prefix(name.to_owned());
            bar.set_message("fetching the first page…");
            bar.enable_steady_tick(Duration::from_millis(120));
            Progress::Bar(bar)
        } else {
            Progress::Lines { name: name.to_owned(), last: None }
        }
    }

    /// After each committed page.
    pub fn page(&mut self, counts: Counts) {
        match self {
            Progress::Bar(bar) => {
                if let Some(total) = counts.total {
                    if bar.length() != Some(total) {
                        bar.set_style(bar_style());
                        bar.set_length(total);
                    }
                    // An incremental sync stops early; the bar then shows how far it walked.
                    bar.set_position(counts.fetched.min(total));
                    bar.set_message(format!("{} new", counts.added));
                } else {
                    bar.set_message(message(counts));
                }
            }
            Progress::Lines { name, last } => {
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    eprintln!("{name}: {}", message(counts));
                    *last = Some(Instant::now());
                }
            }
            Progress::Quiet => {}
        }
    }

    /// When the sync ends, however it ends.
    pub fn finish(&mut self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: [{wide_bar}] {pos}/{len} items, {msg} [{elapsed}]")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn message(c: Counts) -> String {
    let fetched = match c.total {
        Some(total) => format!("{} of {total}", c.fetched),
        None => c.fetched.to_string(),
    };
    format!("{} new, {fetched} fetched, {} page{}", c.added, c.pages, if c.pages == 1 { "" } else { "s" })
}
