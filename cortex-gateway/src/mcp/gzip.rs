//! `tools/list` pages in gzip, for clients that accept it.
//!
//! A page of 100 tool definitions is tens of kilobytes and the same for
//! every caller with the same scopes, so it is compressed once (see
//! [`crate::catalog::Page::deflated`]) and each response only wraps it:
//! a gzip header, the JSON-RPC envelope's opening as a stored (not
//! compressed) block, the page's deflate blocks, the closing brace as the
//! final stored block, and the CRC-32 and length of the whole. The
//! envelope carries the request's `id`, which the client chose; it is never
//! compressed together with anything else, so nothing about the page can
//! be learned from the size of a response (the compression side channel
//! of BREACH needs attacker-chosen bytes and a secret in one compressed
//! stream; a page holds no secret either).

use axum::http::{HeaderMap, header};
use bytes::{BufMut as _, Bytes, BytesMut};

use crate::catalog::Page;

/// Pages smaller than this are sent as they are: compressing a few hundred
/// bytes saves less than it costs.
const MIN_BYTES: usize = 1024;

/// Whether `Accept-Encoding` lists `gzip` (or `x-gzip`) with a non-zero
/// quality. `*` is not taken as gzip: a client that wants it says so, as
/// the official MCP clients' HTTP stacks do.
pub(crate) fn accepted(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            (coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip"))
                && parts.all(|p| {
                    let p = p.trim();
                    match p.get(..2) {
                        Some(q) if q.eq_ignore_ascii_case("q=") => {
                            p[2..].trim().parse::<f32>().is_ok_and(|q| q > 0.0)
                        }
                        _ => true,
                    }
                })
        })
}

/// The gzip stream of `open`, `page` and `close`, in three buffers (the
/// middle one shared with every response of the page); `None` when the
/// page is below [`MIN_BYTES`] or `open` or `close` does not fit one
/// stored block.
pub(crate) fn wrap(open: &[u8], page: &Page, close: &'static [u8]) -> Option<[Bytes; 3]> {
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    if page.json.len() < MIN_BYTES {
        return None;
    }
    let open_len = u16::try_from(open.len()).ok()?;
    let close_len = u16::try_from(close.len()).ok()?;
    let deflated = page.deflated();
    let mut head = BytesMut::with_capacity(HEADER.len() + 5 + open.len());
    head.put_slice(&HEADER);
    stored_block(&mut head, false, open_len);
    head.put_slice(open);
    let mut crc = crc32fast::Hasher::new();
    crc.update(open);
    crc.combine(&deflated.crc);
    crc.update(close);
    let total = open.len() + page.json.len() + close.len();
    let mut tail = BytesMut::with_capacity(5 + close.len() + 8);
    stored_block(&mut tail, true, close_len);
    tail.put_slice(close);
    tail.put_u32_le(crc.finalize());
    // ISIZE is the length modulo 2^32.
    tail.put_u32_le(total as u32);
    Some([head.freeze(), deflated.blocks.clone(), tail.freeze()])
}

/// The header of a stored deflate block of `len` bytes, at a byte boundary
/// (the gzip header and a sync flush both end on one).
fn stored_block(out: &mut BytesMut, last: bool, len: u16) {
    out.put_u8(u8::from(last));
    out.put_u16_le(len);
    out.put_u16_le(!len);
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn gunzip(parts: &[Bytes]) -> Vec<u8> {
        let all: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&all[..])
            .read_to_end(&mut out)
            .expect("a valid gzip stream (CRC and length checked)");
        out
    }

    #[test]
    fn the_wrapped_page_decodes_to_the_envelope_around_the_page() {
        let json: Vec<u8> = (0..400)
            .flat_map(|i| {
                format!(r#"{{"name":"tool_{i}","inputSchema":{{"type":"object"}}}},"#).into_bytes()
            })
            .collect();
        let page = Page::new(Bytes::from(json.clone()));
        for open in [
            &br#"{"jsonrpc":"2.0","id":1,"result":"#[..],
            &[b'x'; 3000][..],
            b"",
        ] {
            let parts = wrap(open, &page, b"}").unwrap();
            let expected = [open, &json[..], b"}"].concat();
            assert_eq!(gunzip(&parts), expected);
            assert!(
                parts[1].len() < json.len() / 5,
                "the page is compressed: {} of {}",
                parts[1].len(),
                json.len()
            );
        }
        // The same compressed blocks serve every response.
        let a = wrap(b"{\"id\":1,", &page, b"}").unwrap();
        let b = wrap(b"{\"id\":2,", &page, b"}").unwrap();
        assert_eq!(a[1].as_ptr(), b[1].as_ptr());
        assert!(wrap(&vec![b'x'; 70_000], &page, b"}").is_none());
    }

    #[test]
    fn accept_encoding_is_read_with_its_quality() {
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
            accepted(&h)
        };
        for (value, gzip) in [
            ("gzip", true),
            ("gzip, deflate, br", true),
            ("br;q=1.0, GZIP;q=0.5", true),
            ("x-gzip", true),
            ("gzip;q=0", false),
            ("gzip; q=0.0, deflate", false),
            ("deflate, br", false),
            ("*", false),
            ("gzipx", false),
        ] {
            assert_eq!(with(value), gzip, "Accept-Encoding: {value}");
        }
        assert!(!accepted(&HeaderMap::new()));
    }
}

/// The wrapped stream against a standard gzip decoder on generated pages
/// and envelopes.
#[cfg(test)]
mod properties {
    use std::io::Read as _;

    use bytes::Bytes;
    use proptest::{collection::vec, prelude::*};

    use super::{MIN_BYTES, wrap};
    use crate::catalog::Page;

    /// Page bytes: random (incompressible), or repetitive like JSON.
    fn page() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            vec(any::<u8>(), 0..40_000),
            (vec(any::<u8>(), 1..64), 0..2_000usize).prop_map(|(unit, times)| unit.repeat(times)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn the_wrapped_stream_decodes_to_open_page_close(
            json in page(),
            open in prop_oneof![vec(any::<u8>(), 0..300), vec(any::<u8>(), 60_000..70_000)],
            close in prop_oneof![Just(&b"}"[..]), Just(&b""[..]), Just(&b"]}\n"[..])],
        ) {
            let page = Page::new(Bytes::from(json.clone()));
            let Some(parts) = wrap(&open, &page, close) else {
                prop_assert!(json.len() < MIN_BYTES || open.len() > usize::from(u16::MAX));
                return Ok(());
            };
            prop_assert!(json.len() >= MIN_BYTES && open.len() <= usize::from(u16::MAX));
            let stream: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
            let mut decoder = flate2::read::GzDecoder::new(&stream[..]);
            let mut out = Vec::new();
            decoder
                .read_to_end(&mut out)
                .map_err(|e| TestCaseError::fail(format!("not a valid gzip stream: {e}")))?;
            prop_assert!(out == [&open[..], &json[..], close].concat(), "decoded bytes differ");
            // Nothing after the gzip member.
            prop_assert!(decoder.into_inner().is_empty());
        }
    }
}
