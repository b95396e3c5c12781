//! Structured `get_help` (contract §7): sections an agent reads before it
//! guesses.

use serde_json::{Map, Value, json};

/// The recommended topics, in the order they are returned.
pub const TOPICS: [&str; 6] = [
    "overview",
    "concepts",
    "workflows",
    "conventions",
    "limits",
    "examples",
];

/// Help sections of a backend.
///
/// ```
/// use cortex_backend::Help;
/// let help = Help::new("The CRM: accounts, contacts and the sales pipeline.")
///     .concept("deal", "An opportunity owned by one sales team.")
///     .workflow("Follow up a deal", ["search_deals", "log_call"])
///     .convention("Amounts are in euros, without cents.")
///     .limit("No email sending.")
///     .example("search_deals", serde_json::json!({"stage": "proposal"}), serde_json::json!({"deals": []}));
/// assert_eq!(help.topics(), ["overview", "concepts", "workflows", "conventions", "limits", "examples"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Help {
    overview: String,
    concepts: Vec<Value>,
    workflows: Vec<Value>,
    conventions: Vec<String>,
    limits: Vec<String>,
    examples: Vec<Value>,
}

impl Help {
    /// Help with its overview: what the app does, for whom.
    pub fn new(overview: impl Into<String>) -> Self {
        Self {
            overview: overview.into(),
            ..Self::default()
        }
    }

    /// A term of the app's vocabulary.
    #[must_use]
    pub fn concept(mut self, term: impl Into<String>, meaning: impl Into<String>) -> Self {
        self.concepts
            .push(json!({"term": term.into(), "meaning": meaning.into()}));
        self
    }

    /// A multi-step workflow, as a list of steps (tool names or sentences).
    #[must_use]
    pub fn workflow<I, T>(mut self, name: impl Into<String>, steps: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let steps: Vec<String> = steps.into_iter().map(Into::into).collect();
        self.workflows
            .push(json!({"name": name.into(), "steps": steps}));
        self
    }

    /// A convention (ids, pagination, dates, units).
    #[must_use]
    pub fn convention(mut self, text: impl Into<String>) -> Self {
        self.conventions.push(text.into());
        self
    }

    /// Something the app deliberately does not do.
    #[must_use]
    pub fn limit(mut self, text: impl Into<String>) -> Self {
        self.limits.push(text.into());
        self
    }

    /// A request/response pair for a tool.
    #[must_use]
    pub fn example(mut self, tool: impl Into<String>, request: Value, response: Value) -> Self {
        self.examples
            .push(json!({"tool": tool.into(), "request": request, "response": response}));
        self
    }

    fn section(&self, topic: &str) -> Option<Value> {
        let list = |v: &Vec<Value>| (!v.is_empty()).then(|| Value::Array(v.clone()));
        let strings = |v: &Vec<String>| (!v.is_empty()).then(|| json!(v));
        match topic {
            "overview" => (!self.overview.is_empty()).then(|| json!(self.overview)),
            "concepts" => list(&self.concepts),
            "workflows" => list(&self.workflows),
            "conventions" => strings(&self.conventions),
            "limits" => strings(&self.limits),
            "examples" => list(&self.examples),
            _ => None,
        }
    }

    /// The topics that have content.
    pub fn topics(&self) -> Vec<&'static str> {
        TOPICS
            .into_iter()
            .filter(|t| self.section(t).is_some())
            .collect()
    }

    /// All sections.
    pub fn all(&self) -> Value {
        let mut map = Map::new();
        for topic in TOPICS {
            if let Some(section) = self.section(topic) {
                map.insert(topic.into(), section);
            }
        }
        Value::Object(map)
    }

    /// One section, as `{"topic": name, name: section}`; `None` for an
    /// unknown or empty topic.
    pub fn topic(&self, topic: &str) -> Option<Value> {
        let section = self.section(topic)?;
        let mut map = Map::new();
        map.insert("topic".into(), json!(topic));
        map.insert(topic.into(), section);
        Some(Value::Object(map))
    }
}
