//! What a run found: one [`CheckResult`] per check, with the evidence of
//! every failure.

use std::time::Duration;

use serde::Serialize;

use crate::checks::CheckInfo;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The backend honours the rule.
    Pass,
    /// The backend breaks the rule.
    Fail,
    /// Allowed by the contract but likely to hurt (a convention, a SHOULD).
    Warn,
    /// Could not run; the message says why.
    Skip,
}

impl Status {
    /// `PASS`, `FAIL`, `WARN` or `SKIP`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Warn => "WARN",
            Self::Skip => "SKIP",
        }
    }
}

/// One problem a check found, with the exchange that shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What is wrong, e.g. "expected 401, got 200".
    pub problem: String,
    /// The request, tokens replaced by what they were (`<expired user token>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
    /// The answer: status, content type and the start of the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<String>,
}

impl Finding {
    /// A finding without an exchange (a problem in the catalog itself).
    pub fn new(problem: impl Into<String>) -> Self {
        Self {
            problem: problem.into(),
            sent: None,
            received: None,
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Stable id.
    pub id: &'static str,
    /// What the check verifies.
    pub description: &'static str,
    /// The contract section.
    pub section: &'static str,
    /// The rule.
    pub requires: &'static str,
    /// Outcome.
    pub status: Status,
    /// A summary: what was checked, or why it was skipped.
    pub message: String,
    /// The problems found (failures and warnings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

impl CheckResult {
    pub(crate) fn new(info: &'static CheckInfo, outcome: Outcome) -> Self {
        Self {
            id: info.id,
            description: info.description,
            section: info.section,
            requires: info.requires,
            status: outcome.status,
            message: outcome.message,
            findings: outcome.findings,
        }
    }
}

/// How many checks ended how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Passed with a warning.
    pub warned: usize,
    /// Skipped.
    pub skipped: usize,
}

/// The report of one run against one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The endpoint checked.
    pub target: String,
    /// Which user tokens the run had (`issuer`, `user token` or `none`).
    pub user_tokens: String,
    /// Counts.
    pub summary: Summary,
    /// Wall time of the run (`durationMs` in JSON).
    #[serde(rename = "durationMs", serialize_with = "millis")]
    pub duration: Duration,
    /// One result per check that ran or was skipped, in catalog order.
    pub checks: Vec<CheckResult>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Report {
    pub(crate) fn new(
        target: String,
        user_tokens: String,
        duration: Duration,
        checks: Vec<CheckResult>,
    ) -> Self {
        let mut summary = Summary::default();
        for c in &checks {
            match c.status {
                Status::Pass => summary.passed += 1,
                Status::Fail => summary.failed += 1,
                Status::Warn => summary.warned += 1,
                Status::Skip => summary.skipped += 1,
            }
        }
        Self {
            target,
            user_tokens,
            summary,
            duration,
            checks,
        }
    }

    /// Whether no check failed (warnings and skips are fine).
    pub fn passed(&self) -> bool {
        self.summary.failed == 0
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }

    /// The ids of the checks that ended with `status`.
    pub fn ids_with(&self, status: Status) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.status == status)
            .map(|c| c.id)
            .collect()
    }

    /// The result of one check, if it ran.
    pub fn get(&self, id: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// Panics, listing every failure with its evidence, unless no check
    /// failed. For Rust tests: `contract_tests::check(url, options).await?.assert_passed()`.
    #[track_caller]
    pub fn assert_passed(&self) {
        if !self.passed() {
            let only_failures = Report::new(
                self.target.clone(),
                self.user_tokens.clone(),
                self.duration,
                self.failures().cloned().collect(),
            );
            panic!(
                "{} of {} conformance checks failed against {}:\n{}",
                self.summary.failed,
                self.checks.len(),
                self.target,
                crate::render::human(&only_failures, false)
            );
        }
    }

    /// Panics unless no check failed and none was skipped: for tests that
    /// must exercise every check.
    #[track_caller]
    pub fn assert_all_ran_and_passed(&self) {
        self.assert_passed();
        let skipped: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Skip)
            .map(|c| format!("{}: {}", c.id, c.message))
            .collect();
        assert!(
            skipped.is_empty(),
            "checks were skipped:\n{}",
            skipped.join("\n")
        );
    }
}

/// What a check concluded, before it is tied to its catalog entry.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) status: Status,
    pub(crate) message: String,
    pub(crate) findings: Vec<Finding>,
}

impl Outcome {
    pub(crate) fn pass(message: impl Into<String>) -> Self {
        Self {
            status: Status::Pass,
            message: message.into(),
            findings: Vec::new(),
        }
    }

    pub(crate) fn skip(reason: impl Into<String>) -> Self {
        Self {
            status: Status::Skip,
            message: reason.into(),
            findings: Vec::new(),
        }
    }

    pub(crate) fn fail(message: impl Into<String>, findings: Vec<Finding>) -> Self {
        Self {
            status: Status::Fail,
            message: message.into(),
            findings,
        }
    }

    pub(crate) fn warn(message: impl Into<String>, findings: Vec<Finding>) -> Self {
        Self {
            status: Status::Warn,
            message: message.into(),
            findings,
        }
    }

    /// Pass when nothing was found, else fail with the findings.
    pub(crate) fn from_findings(
        findings: Vec<Finding>,
        checked: impl Into<String>,
        failed: impl FnOnce(usize) -> String,
    ) -> Self {
        if findings.is_empty() {
            Self::pass(checked)
        } else {
            let n = findings.len();
            Self::fail(failed(n), findings)
        }
    }
}
