//! `get_snapshot`: aggregate metrics, never per-user data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A metric's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MetricValue {
    /// A number (kept as written: integers stay integers).
    Number(serde_json::Number),
    /// A string.
    Text(String),
}

impl From<i64> for MetricValue {
    fn from(v: i64) -> Self {
        Self::Number(v.into())
    }
}

impl From<f64> for MetricValue {
    fn from(v: f64) -> Self {
        serde_json::Number::from_f64(v).map_or_else(|| Self::Text(v.to_string()), Self::Number)
    }
}

impl From<&str> for MetricValue {
    fn from(v: &str) -> Self {
        Self::Text(v.into())
    }
}

impl From<String> for MetricValue {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

/// A traffic-light status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricStatus {
    /// Fine.
    Green,
    /// Watch.
    Orange,
    /// Act.
    Red,
}

/// One metric of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Metric {
    /// Stable key.
    pub key: String,
    /// Display label.
    pub label: String,
    /// The value.
    pub value: MetricValue,
    /// Unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Change since the last period; may be `null`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schemars(with = "Option<serde_json::Number>")]
    pub delta: Option<Option<serde_json::Number>>,
    /// Traffic light; may be `null`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schemars(with = "Option<MetricStatus>")]
    pub status: Option<Option<MetricStatus>>,
    /// Link to the app's page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

impl Metric {
    /// A metric with a key, label and value.
    pub fn new(
        key: impl Into<String>,
        label: impl Into<String>,
        value: impl Into<MetricValue>,
    ) -> Self {
        Self {
            key: key.into(),
            label: label.into(),
            value: value.into(),
            unit: None,
            delta: None,
            status: None,
            href: None,
        }
    }
}

/// A titled group of metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotSection {
    /// Title.
    pub title: String,
    /// Metrics.
    pub metrics: Vec<Metric>,
}

/// `get_snapshot` result: aggregates only, never per-user data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Backend id.
    pub backend: String,
    /// ISO 8601 time of generation.
    pub generated_at: String,
    /// Title.
    pub title: String,
    /// The headline metrics.
    pub headline: Vec<Metric>,
    /// Further sections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sections: Option<Vec<SnapshotSection>>,
    /// A hint for the reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Serde helpers for fields that may be absent, `null` or a value.
mod nullable {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}
