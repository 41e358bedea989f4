//! Progress lines on stderr while a run goes (one line per step, CI-log friendly).

use std::time::{Duration, Instant};

pub struct Progress {
    start: Instant,
    pub quiet: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            start: Instant::now(),
            quiet: false,
        }
    }
}

impl Progress {
    fn line(&self, text: &str) {
        if !self.quiet {
            eprintln!("[{:>6.1}s] {text}", self.start.elapsed().as_secs_f64());
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
