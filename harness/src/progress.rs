//! Progress lines on stderr while a run goes (one line per step, CI-log friendly).

use std::time::{Duration, Instant};

pub struct Progress {
    start: Instant,
    pub quiet: bool,
    /// Which of several things running side by side this line is about (`k8s-1.33 w2 `).
    label: String,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            start: Instant::now(),
            quiet: false,
            label: String::new(),
        }
    }
}

impl Progress {
    /// The same clock, every line labelled (a matrix cell or a worker running beside others).
    pub fn labelled(&self, label: &str) -> Progress {
        Progress {
            start: self.start,
            quiet: self.quiet,
            label: match label {
                "" => self.label.clone(),
                l => format!("{}{l} ", self.label),
            },
        }
    }

    fn line(&self, text: &str) {
        if !self.quiet {
            eprintln!(
                "[{:>6.1}s] {}{text}",
                self.start.elapsed().as_secs_f64(),
                self.label
            );
        }
    }
    pub fn step(&self, text: &str) {
        self.line(&format!("  {text}"));
    }
    pub fn phase(&self, text: &str) {
        self.line(text);
    }
    pub fn scenario_start(&self, i: usize, n: usize, name: &str) {
        self.line(&format!("scenario {i}/{n}: {name}"));
    }
    pub fn scenario_done(&self, name: &str, failed: usize, took: Duration) {
        let verdict = if failed == 0 {
            "ok".to_string()
        } else {
            format!("{failed} FAILED")
        };
        self.line(&format!(
            "  {name}: {verdict} ({:.1} s)",
            took.as_secs_f64()
        ));
    }
}

/// A download's progress: a bar on a terminal, a line per quarter otherwise (CI logs).
pub struct Bar {
    bar: Option<indicatif::ProgressBar>,
    name: String,
    total: Option<u64>,
    quarter_shown: std::sync::atomic::AtomicU64,
    quiet: bool,
}

impl Progress {
    pub fn bar(&self, name: &str, total: Option<u64>) -> Bar {
        use std::io::IsTerminal;
        let bar = (!self.quiet && std::io::stderr().is_terminal()).then(|| {
            let b = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "  {msg:<28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(name.to_string());
            b
        });
        Bar {
            bar,
            name: name.to_string(),
            total,
            quarter_shown: std::sync::atomic::AtomicU64::new(0),
            quiet: self.quiet,
        }
    }
}

impl Bar {
    pub fn set_position(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
            return;
        }
        if let Some(t) = self.total.filter(|t| *t > 0)
            && !self.quiet
        {
            let quarter = done * 4 / t;
            let shown = self
                .quarter_shown
                .load(std::sync::atomic::Ordering::Relaxed);
            if quarter > shown && quarter < 4 {
                self.quarter_shown
                    .store(quarter, std::sync::atomic::Ordering::Relaxed);
                eprintln!("    {}: {}% of {} bytes", self.name, quarter * 25, t);
            }
        }
    }
    pub fn finish_and_clear(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
