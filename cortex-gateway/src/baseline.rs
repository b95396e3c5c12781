//! `cortex-gateway baseline keygen | sign | verify | approve`: the
//! operator's side of a signed tool-integrity baseline, run where the
//! private key lives (off the gateway host when the gateway holds only the
//! public key).
//!
//! `verify` also reads the public cortex-gateway's signed baselines (same
//! envelope and algorithm, other blocks); their approvals use another
//! fingerprint, so this gateway cannot adopt them.

use std::path::Path;

use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey as _, pkcs8::spki::der::pem::LineEnding};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::{
    catalog::integrity::{Baseline, FORMAT, signature},
    store::integrity::IntegrityDocument,
};

/// What a baseline file holds, as `verify` and `sign` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineSummary {
    /// `cortex` (this gateway's format) or `public cortex-gateway`.
    pub format: &'static str,
    /// Approved tool definitions.
    pub approved: usize,
    /// Open quarantines.
    pub quarantined: usize,
    /// `operator` (signed off-host) or `self-signed` (by a gateway).
    pub trust_level: Option<String>,
    /// When it was signed.
    pub signed_at: Option<String>,
    /// The short id of the key it verified with.
    pub key_id: Option<String>,
}

impl std::fmt::Display for BaselineSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "format       {}", self.format)?;
        writeln!(f, "approved     {}", self.approved)?;
        writeln!(f, "quarantined  {}", self.quarantined)?;
        if let Some(t) = &self.trust_level {
            writeln!(f, "trust level  {t}")?;
        }
        if let Some(t) = &self.signed_at {
            writeln!(f, "signed at    {t}")?;
        }
        if let Some(k) = &self.key_id {
            writeln!(f, "key          {k}")?;
        }
        Ok(())
    }
}

fn read_object(path: &Path) -> Result<Map<String, Value>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not a JSON object: {e}", path.display()))
}

fn count(value: Option<&Value>, nested: bool) -> usize {
    let Some(Value::Object(map)) = value else {
        return 0;
    };
    if nested {
        map.values()
            .map(|v| v.as_object().map_or(0, Map::len))
            .sum()
    } else {
        map.len()
    }
}

fn summary(doc: &Map<String, Value>, key_id: Option<String>) -> BaselineSummary {
    let public = signature::blocks_of(doc) == signature::PUBLIC_GATEWAY_BLOCKS;
    let (approved, quarantined) = if public {
        (
            count(doc.get("tools"), false),
            count(doc.get("quarantine"), false),
        )
    } else {
        (
            count(doc.get("approved"), true),
            count(doc.get("quarantined"), true),
        )
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    BaselineSummary {
        format: if public {
            "public cortex-gateway"
        } else {
            "cortex"
        },
        approved,
        quarantined,
        trust_level: text(doc.get("trust").and_then(|t| t.get("trust_level"))),
        signed_at: text(doc.get("signature").and_then(|s| s.get("created_at"))),
        key_id,
    }
}

/// This gateway's baseline in `doc` without its envelope, checked strictly.
fn ours(mut doc: Map<String, Value>, path: &Path) -> Result<Baseline, String> {
    if signature::blocks_of(&doc) == signature::PUBLIC_GATEWAY_BLOCKS {
        return Err(format!(
            "{} is a public cortex-gateway baseline: its approvals use another fingerprint, \
             so this gateway cannot use them; `verify` checks its signature",
            path.display()
        ));
    }
    signature::strip(&mut doc);
    let baseline: Baseline = serde_json::from_value(Value::Object(doc))
        .map_err(|e| format!("{} is not a tool-integrity baseline: {e}", path.display()))?;
    if baseline.format != FORMAT {
        return Err(format!(
            "{} has format {}; this gateway reads format {FORMAT}",
            path.display(),
            baseline.format
        ));
    }
    Ok(baseline)
}

/// Writes a new Ed25519 private key to `out` (PKCS#8 PEM, mode 0600; an
/// existing file is never overwritten) and returns the public key's PEM.
pub fn keygen(out: &Path) -> Result<String, String> {
    let mut seed = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(seed.as_mut_slice()).map_err(|_| "no randomness available")?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode the key: {e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).map_err(|e| {
        format!(
            "cannot create {}: {e} (an existing key is never overwritten)",
            out.display()
        )
    })?;
    std::io::Write::write_all(&mut file, pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(signature::public_pem(&key.verifying_key()))
}

/// Signs the baseline at `path` with the private key in `key_file`, as an
/// operator, and writes it to `out` (default: in place, atomically).
pub fn sign(path: &Path, key_file: &Path, out: Option<&Path>) -> Result<BaselineSummary, String> {
    let pem = Zeroizing::new(
        std::fs::read_to_string(key_file)
            .map_err(|e| format!("cannot read {}: {e}", key_file.display()))?,
    );
    let key = signature::private_key(&pem)?;
    let doc = read_object(path)?;
    let baseline = ours(doc, path)?;
    let mut value = match serde_json::to_value(&baseline).map_err(|e| e.to_string())? {
        Value::Object(map) => map,
        _ => return Err("the baseline is not a JSON object".into()),
    };
    signature::sign(
        &mut value,
        &key,
        true,
        &crate::audit::rfc3339(std::time::SystemTime::now()),
    );
    let mut text = serde_json::to_vec_pretty(&value).map_err(|e| e.to_string())?;
    text.push(b'\n');
    let target = out.unwrap_or(path);
    IntegrityDocument::File(target.to_path_buf())
        .save(&text)
        .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    Ok(summary(
        &value,
        Some(signature::key_id(&key.verifying_key())),
    ))
}

/// Checks the signature of the baseline at `path` against `public_key`
/// (SPKI PEM text, or the path of a PEM file).
pub fn verify(path: &Path, public_key: &str) -> Result<BaselineSummary, String> {
    let pem = if public_key.contains("-----BEGIN") {
        public_key.to_owned()
    } else {
        std::fs::read_to_string(public_key)
            .map_err(|e| format!("cannot read the public key {public_key}: {e}"))?
    };
    let key = signature::public_key(&pem)?;
    let doc = read_object(path)?;
    signature::verify(&doc, &key)?;
    if signature::blocks_of(&doc) == signature::SIGNED_BLOCKS {
        ours(doc.clone(), path)?;
    }
    Ok(summary(&doc, Some(signature::key_id(&key))))
}

/// Moves the quarantine of the tool with public name `tool` into the
/// approvals of the baseline at `path` (for example the `.proposed` file a
/// verify-only gateway wrote), leaving it unsigned: `sign` it next.
pub fn approve(path: &Path, tool: &str) -> Result<BaselineSummary, String> {
    let mut baseline = ours(read_object(path)?, path)?;
    let found = baseline.quarantined.iter().find_map(|(backend, tools)| {
        tools
            .iter()
            .find(|(_, q)| q.public == tool)
            .map(|(name, q)| (backend.clone(), name.clone(), q.pending.clone()))
    });
    let Some((backend, name, pending)) = found else {
        let open: Vec<&str> = baseline
            .quarantined
            .values()
            .flat_map(|t| t.values().map(|q| q.public.as_str()))
            .collect();
        return Err(format!(
            "no quarantined tool named `{tool}` in {}; open quarantines: {}",
            path.display(),
            if open.is_empty() {
                "none".into()
            } else {
                open.join(", ")
            }
        ));
    };
    baseline
        .approved
        .entry(backend.clone())
        .or_default()
        .insert(name.clone(), pending);
    if let Some(tools) = baseline.quarantined.get_mut(&backend) {
        tools.remove(&name);
    }
    baseline.quarantined.retain(|_, t| !t.is_empty());
    let text = baseline.to_text(&signature::BaselineSigning::Off)?;
    IntegrityDocument::File(path.to_path_buf())
        .save(&text)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let value: Map<String, Value> = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    Ok(summary(&value, None))
}
