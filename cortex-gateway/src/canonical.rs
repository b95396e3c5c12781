//! Canonical JSON: object keys sorted at every level, no whitespace. Tool
//! fingerprints and the audit's argument hashes are taken over it.

use serde_json::Value;

/// Writes `value` as JSON with object keys sorted at every level, so two
/// definitions that differ only in key order hash the same.
#[cfg(test)]
pub(crate) fn canonical_json(value: &Value, out: &mut String) {
    let mut bytes = Vec::with_capacity(64);
    write_canonical(value, &mut bytes);
    // Serialized JSON is UTF-8.
    out.push_str(&String::from_utf8_lossy(&bytes));
}

/// Canonical JSON into a byte buffer, without building a string per
/// key or scalar: the audit hashes every call's arguments this way.
pub(crate) fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            out.push(b'{');
            // serde_json's map is sorted unless a crate in the build turns
            // on its `preserve_order` feature; sort only then.
            if map.keys().is_sorted() {
                write_members(map.iter(), out);
            } else {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_unstable_by_key(|(k, _)| *k);
                write_members(members.into_iter(), out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Writing into a Vec cannot fail.
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_members<'a>(members: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut Vec<u8>) {
    for (i, (k, v)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        write_canonical(v, out);
    }
}
