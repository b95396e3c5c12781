//! Printing: one table per scenario, then the ratios against the targets.

use std::time::Duration;

use crate::load::Sample;

/// One measured variant of a scenario (all its rounds merged).
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// What was measured.
    pub(crate) label: String,
    /// Requests per second.
    pub(crate) throughput: f64,
    /// Median latency.
    pub(crate) p50: Duration,
    /// 99th percentile latency.
    pub(crate) p99: Duration,
    /// Requests measured.
    pub(crate) requests: u64,
    /// Of which failed.
    pub(crate) errors: u64,
    /// CPU time of the hop process (gateway or proxy) per request.
    pub(crate) hop_cpu_per_request: Option<Duration>,
}

impl Row {
    /// Summarises `sample`; `hop_cpu` is the hop process's CPU time over it.
    pub(crate) fn new(label: &str, mut sample: Sample, hop_cpu: Option<Duration>) -> Self {
        let requests = sample.ok + sample.errors;
        let answered = sample.total;
        Self {
            label: label.to_owned(),
            throughput: sample.throughput(),
            p50: sample.quantile(0.50),
            p99: sample.quantile(0.99),
            requests,
            errors: sample.errors,
            hop_cpu_per_request: hop_cpu
                .filter(|_| answered > 0)
                .map(|c| c / u32::try_from(answered).unwrap_or(u32::MAX)),
        }
    }
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Prints a scenario's table.
pub(crate) fn table(title: &str, rows: &[Row]) {
    println!("\n## {title}\n");
    println!(
        "| {:<46} | {:>10} | {:>9} | {:>9} | {:>8} | {:>6} | {:>13} |",
        "variant", "req/s", "p50", "p99", "requests", "errors", "hop CPU / req"
    );
    println!(
        "|{:-<48}|{:->12}|{:->11}|{:->11}|{:->10}|{:->8}|{:->15}|",
        "", "", "", "", "", "", ""
    );
    for r in rows {
        println!(
            "| {:<46} | {:>10.0} | {:>9} | {:>9} | {:>8} | {:>6} | {:>13} |",
            r.label,
            r.throughput,
            micros(r.p50),
            micros(r.p99),
            r.requests,
            r.errors,
            r.hop_cpu_per_request
                .map(micros)
                .unwrap_or_else(|| "-".into()),
        );
    }
}

/// A figure compared with a target (or reported for information).
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    /// What the figure is.
    pub(crate) what: String,
    /// The figure, formatted.
    pub(crate) value: String,
    /// The target, formatted (`-` for information only).
    pub(crate) target: String,
    /// `None` for information only.
    pub(crate) pass: Option<bool>,
}

impl Verdict {
    /// A ratio that must be at least `min`.
    pub(crate) fn at_least(what: &str, ratio: f64, min: f64) -> Self {
        Self {
            what: what.to_owned(),
            value: format!("{ratio:.2}"),
            target: format!(">= {min}"),
            pass: Some(ratio >= min),
        }
    }

    /// A ratio that must be at most `max`.
    pub(crate) fn at_most(what: &str, ratio: f64, max: f64) -> Self {
        Self {
            what: what.to_owned(),
            value: format!("{ratio:.2}"),
            target: format!("<= {max}"),
            pass: Some(ratio <= max),
        }
    }

    /// A figure without a target.
    pub(crate) fn info(what: &str, value: String) -> Self {
        Self {
            what: what.to_owned(),
            value,
            target: "-".into(),
            pass: None,
        }
    }

    /// A figure with a target stated by the caller.
    pub(crate) fn custom(what: &str, value: String, target: String, pass: bool) -> Self {
        Self {
            what: what.to_owned(),
            value,
            target,
            pass: Some(pass),
        }
    }
}

/// Prints the verdicts; returns whether every target was met.
pub(crate) fn verdicts(verdicts: &[Verdict]) -> bool {
    println!("\n## Targets\n");
    println!(
        "| {:<62} | {:>18} | {:>16} | {:<6} |",
        "figure", "value", "target", "result"
    );
    println!("|{:-<64}|{:->20}|{:->18}|{:-<8}|", "", "", "", "");
    let mut all = true;
    for v in verdicts {
        let result = match v.pass {
            Some(true) => "PASS",
            Some(false) => {
                all = false;
                "MISS"
            }
            None => "info",
        };
        println!(
            "| {:<62} | {:>18} | {:>16} | {:<6} |",
            v.what, v.value, v.target, result
        );
    }
    all
}

/// Prints the machine the figures come from.
pub(crate) fn machine() {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, m)| m.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!("# cortex-bench {}\n", env!("CARGO_PKG_VERSION"));
    println!(
        "machine: {cpus} CPUs, {model}, load average {}",
        load_average()
    );
}

/// The 1/5/15-minute load averages.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
