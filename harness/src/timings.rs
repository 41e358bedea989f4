//! Per-phase timings for the benchmark and the run summary.

use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub entries: Vec<(String, Duration)>,
}

impl Timings {
    pub fn add(&mut self, phase: &str, d: Duration) {
        self.entries.push((phase.to_string(), d));
    }

    pub fn render(&self) -> String {
        let width = self
            .entries
            .iter()
            .map(|(p, _)| p.len())
            .max()
            .unwrap_or(10);
        self.entries
            .iter()
            .map(|(p, d)| format!("  {p:<width$}  {:>7.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
