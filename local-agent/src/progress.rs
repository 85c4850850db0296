//! How a sync shows its progress: a spinner with counts on a terminal, a plain line per
//! second (and the first page at once) otherwise, or nothing (`latchkey run` logs one
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
            Progress::Bar(bar) => bar.set_message(message(counts)),
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

fn message(c: Counts) -> String {
    format!("{} new, {} fetched, {} page{}", c.added, c.fetched, c.pages, if c.pages == 1 { "" } else { "s" })
}
