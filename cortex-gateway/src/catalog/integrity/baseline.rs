//! The baseline: approved definitions and open quarantines, kept in the
//! store's integrity document (a file for one process, written
//! atomically), read strictly (any doubt is corruption).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use serde_json::Value;

use super::{fingerprint::Fingerprint, signature, signature::BaselineSigning};
use crate::store::integrity::IntegrityDocument;

/// The file format version this build reads and writes.
pub(crate) const FORMAT: u32 = 1;

/// A tool withheld until an operator approves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Quarantine {
    /// The public (MCP) name of the tool.
    pub public: String,
    /// The fields that differ from the approved definition.
    pub changed: Vec<String>,
    /// The fingerprint of the definition now offered (what approval accepts).
    pub pending: Fingerprint,
    /// When the change was first seen (seconds since the Unix epoch).
    pub since: u64,
}

/// The whole file. Maps are `backend id -> tool name (in the backend) -> ...`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Baseline {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// Approved fingerprints.
    pub approved: BTreeMap<String, BTreeMap<String, Fingerprint>>,
    /// Open quarantines.
    #[serde(default)]
    pub quarantined: BTreeMap<String, BTreeMap<String, Quarantine>>,
}

/// Why the baseline file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BaselineError {
    /// It exists but cannot be read or parsed.
    #[error(
        "the tool-integrity baseline {place} is unreadable or corrupt ({reason}); it is left untouched. \
         Restore it from a backup, or delete it to trust the current definitions again (every tool \
         is then re-approved as first seen)"
    )]
    Corrupt {
        /// Where the baseline is kept (the file).
        place: String,
        /// What went wrong.
        reason: String,
    },
    /// Writing it failed.
    #[error(
        "cannot write the tool-integrity baseline {place}: {reason}; check the directory's permissions and free space"
    )]
    Write {
        /// Where the baseline is kept (the file).
        place: String,
        /// What went wrong.
        reason: String,
    },
}

impl Baseline {
    /// Reads the baseline from `doc`; `Ok(None)` when none was saved yet.
    /// With a signing key configured the document must carry a valid
    /// signature by that key, and a missing document is refused when this
    /// gateway cannot sign one itself (deleting the file must not reset
    /// the approvals).
    pub(crate) fn load(
        doc: &IntegrityDocument,
        signing: &BaselineSigning,
    ) -> Result<Option<Self>, BaselineError> {
        let corrupt = |reason: String| BaselineError::Corrupt {
            place: doc.place(),
            reason,
        };
        let Some(bytes) = doc.load().map_err(|e| corrupt(e.to_string()))? else {
            if !signing.can_sign() {
                return Err(corrupt(
                    "no signed baseline exists and this gateway holds only the public key; \
                     sign one off-host (`cortex-gateway baseline sign`, starting from the \
                     proposal the gateway writes beside it)"
                        .into(),
                ));
            }
            return Ok(None);
        };
        let mut value: serde_json::Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        match signing.verifying_key() {
            Some(key) => signature::verify(&value, &key).map_err(corrupt)?,
            None if value.contains_key("signature") => tracing::warn!(
                place = %doc.place(),
                "the tool-integrity baseline is signed but no CORTEX_BASELINE_PUBLIC_KEY is \
                 configured: its signature is not checked"
            ),
            None => {}
        }
        signature::strip(&mut value);
        let baseline: Self =
            serde_json::from_value(Value::Object(value)).map_err(|e| corrupt(e.to_string()))?;
        if baseline.format != FORMAT {
            return Err(corrupt(format!(
                "format {} is not the format {FORMAT} this gateway reads",
                baseline.format
            )));
        }
        Ok(Some(baseline))
    }

    /// The document text of this baseline: pretty JSON, signed by the
    /// gateway when it holds the private key.
    pub(crate) fn to_text(&self, signing: &BaselineSigning) -> Result<Vec<u8>, String> {
        let mut value = match serde_json::to_value(self).map_err(|e| e.to_string())? {
            Value::Object(map) => map,
            _ => return Err("the baseline is not a JSON object".into()),
        };
        if let BaselineSigning::Sign(key) = signing {
            signature::sign(
                &mut value,
                key,
                false,
                &crate::audit::rfc3339(std::time::SystemTime::now()),
            );
        }
        let mut text = serde_json::to_vec_pretty(&value).map_err(|e| e.to_string())?;
        text.push(b'\n');
        Ok(text)
    }

    /// Replaces the baseline in `doc` with this one. A gateway that can
    /// only verify never writes the baseline: it writes the unsigned
    /// proposal beside it for the operator to review and sign.
    pub(crate) fn store(
        &self,
        doc: &IntegrityDocument,
        signing: &BaselineSigning,
    ) -> Result<(), BaselineError> {
        let failed = |reason: String| BaselineError::Write {
            place: doc.place(),
            reason,
        };
        let text = self.to_text(signing).map_err(failed)?;
        if signing.can_sign() {
            doc.save(&text).map_err(|e| failed(e.to_string()))
        } else {
            doc.save_proposal(&text).map_err(|e| failed(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::temp_path;

    #[test]
    fn round_trip_in_a_file_and_in_memory() {
        for doc in [
            IntegrityDocument::at(Some(temp_path("roundtrip"))),
            IntegrityDocument::at(None),
        ] {
            assert!(
                Baseline::load(&doc, &BaselineSigning::Off)
                    .unwrap()
                    .is_none()
            );
            let mut b = Baseline {
                format: FORMAT,
                ..Baseline::default()
            };
            b.approved.entry("crm".into()).or_default().insert(
                "search".into(),
                [("scope".to_string(), "ab".to_string())].into(),
            );
            b.store(&doc, &BaselineSigning::Off).unwrap();
            assert_eq!(
                Baseline::load(&doc, &BaselineSigning::Off).unwrap(),
                Some(b)
            );
        }
    }

    #[test]
    fn garbage_and_unknown_formats_are_corrupt() {
        let path = temp_path("corrupt");
        let doc = IntegrityDocument::at(Some(path.clone()));
        std::fs::write(&path, "{ not json").unwrap();
        assert!(matches!(
            Baseline::load(&doc, &BaselineSigning::Off),
            Err(BaselineError::Corrupt { .. })
        ));
        std::fs::write(&path, r#"{"format": 99, "approved": {}}"#).unwrap();
        let e = Baseline::load(&doc, &BaselineSigning::Off)
            .unwrap_err()
            .to_string();
        assert!(e.contains("format 99"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
    }
}
