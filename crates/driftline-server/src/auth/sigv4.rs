//! Verifies AWS Signature Version 4 as AWS does: the canonical request is
//! rebuilt from the headers the client says it signed, and the signature is
//! recomputed with the key's secret. The signing key and the HMAC come from
//! the `aws-sigv4` crate; the canonical request is built here because a
//! verifier must use exactly the headers the client named, not those a
//! signer would choose.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use super::keys::{constant_time_eq, AccessKey, KeyRing};
use super::Failure;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's date may be from this server's clock, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// The parts of a request that its signature covers.
pub struct Signed<'a> {
    pub method: &'a str,
    /// The path as sent (still percent-encoded).
    pub path: &'a str,
    /// The query string as sent, without `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What a request must also have signed, and the service its scope must name.
pub struct Rules<'a> {
    /// `None`: any service name.
    pub service: Option<&'a str>,
    /// Headers that must be among the signed ones (beyond `host` and `x-amz-date`).
    pub must_sign: &'a [&'a str],
}

struct Authorization<'a> {
    key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signed_headers_text: &'a str,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, Failure> {
    let incomplete = |what: &str| Failure::Incomplete(what.to_string());
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| incomplete("the Authorization header must start with AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        } else if !part.is_empty() {
            return Err(incomplete(
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters, separated by commas",
            ));
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(incomplete(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(
            "Credential must be KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request",
        ));
    };
    if terminator != "aws4_request"
        || date.len() != 8
        || !date.bytes().all(|b| b.is_ascii_digit())
        || region.is_empty()
        || service.is_empty()
    {
        return Err(incomplete(
            "Credential must be KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request",
        ));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete("Signature must be 64 hexadecimal characters"));
    }
    let signed_headers: Vec<&str> = signed.split(';').collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(incomplete(
            "SignedHeaders must be lower-case header names separated by ';'",
        ));
    }
    Ok(Authorization {
        key_id,
        date,
        region,
        service,
        signed_headers,
        signed_headers_text: signed,
        signature,
    })
}

/// Everything but the signature itself: the header is well formed, names
/// what must be signed, is dated within the skew, and names a known key.
/// Cheap, and needs no body: a server runs it before reading one.
pub fn precheck(
    keys: &KeyRing,
    authorization: &str,
    headers: &HeaderMap,
    rules: &Rules,
    now: SystemTime,
) -> Result<Arc<AccessKey>, Failure> {
    precheck_parsed(
        keys,
        &parse_authorization(authorization)?,
        headers,
        rules,
        now,
    )
    .map(|(key, _)| key)
}

fn precheck_parsed(
    keys: &KeyRing,
    auth: &Authorization<'_>,
    headers: &HeaderMap,
    rules: &Rules,
    now: SystemTime,
) -> Result<(Arc<AccessKey>, SystemTime), Failure> {
    for header in ["host", "x-amz-date"].iter().chain(rules.must_sign) {
        if !auth.signed_headers.contains(header) {
            return Err(Failure::Incomplete(format!(
                "the header {header} must be signed (SignedHeaders={})",
                auth.signed_headers_text
            )));
        }
    }
    let amz_date = header_text(headers, "x-amz-date")
        .ok_or_else(|| Failure::Incomplete("the request has no X-Amz-Date header".into()))?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        Failure::Incomplete(format!(
            "X-Amz-Date {amz_date:?} is not of the form YYYYMMDDTHHMMSSZ"
        ))
    })?;
    if !amz_date.starts_with(auth.date) {
        return Err(Failure::Incomplete(format!(
            "the Credential's date {} is not the date of X-Amz-Date {amz_date}",
            auth.date
        )));
    }
    if let Some(service) = rules.service {
        if auth.service != service {
            return Err(Failure::Incomplete(format!(
                "the Credential names service {:?}; this API is {service:?}",
                auth.service
            )));
        }
    }
    check_skew(signed_at, amz_date, now)?;
    let key = keys
        .get(auth.key_id)
        .ok_or_else(|| Failure::UnknownKey(auth.key_id.to_string()))?;
    Ok((key.clone(), signed_at))
}

/// The key that signed the request, or why it is refused.
pub fn verify(
    keys: &KeyRing,
    authorization: &str,
    request: &Signed,
    rules: &Rules,
    now: SystemTime,
) -> Result<Arc<AccessKey>, Failure> {
    let auth = parse_authorization(authorization)?;
    let (key, signed_at) = precheck_parsed(keys, &auth, request.headers, rules, now)?;
    let amz_date = header_text(request.headers, "x-amz-date").unwrap_or_default();

    let body_hash = hex(&Sha256::digest(request.body));
    if let Some(claimed) = header_text(request.headers, "x-amz-content-sha256") {
        if claimed != body_hash {
            return Err(if claimed.len() == 64 {
                Failure::Mismatch("the body is not the one that was signed".into())
            } else {
                Failure::Incomplete(format!(
                    "x-amz-content-sha256 {claimed:?} is not accepted: the body must be signed"
                ))
            });
        }
    }
    let mut canonical = String::with_capacity(256);
    canonical.push_str(request.method);
    canonical.push('\n');
    uri_encode(request.path, false, &mut canonical);
    canonical.push('\n');
    canonical_query(request.query, &mut canonical);
    canonical.push('\n');
    for name in &auth.signed_headers {
        let values: Vec<&[u8]> = request
            .headers
            .get_all(*name)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        if values.is_empty() {
            return Err(Failure::Incomplete(format!(
                "the signed header {name} is not in the request"
            )));
        }
        canonical.push_str(name);
        canonical.push(':');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                canonical.push(',');
            }
            push_trimmed(value, &mut canonical);
        }
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(auth.signed_headers_text);
    canonical.push('\n');
    canonical.push_str(&body_hash);

    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let signing_key = aws_sigv4::sign::v4::generate_signing_key(
        key.secret(),
        signed_at,
        auth.region,
        auth.service,
    );
    let expected = aws_sigv4::sign::v4::calculate_signature(signing_key, string_to_sign.as_bytes());
    if !constant_time_eq(
        expected.as_bytes(),
        auth.signature.to_ascii_lowercase().as_bytes(),
    ) {
        return Err(Failure::Mismatch(
            "The request signature we calculated does not match the signature you provided. Check your Secret Access Key and signing method.".into(),
        ));
    }
    Ok(key)
}

fn check_skew(signed_at: SystemTime, amz_date: &str, now: SystemTime) -> Result<(), Failure> {
    let now_text = format_amz_date(now);
    if signed_at + MAX_SKEW < now {
        return Err(Failure::Expired(format!(
            "Signature expired: {amz_date} is now earlier than {} ({now_text} - 5 min.)",
            format_amz_date(now - MAX_SKEW)
        )));
    }
    if signed_at > now + MAX_SKEW {
        return Err(Failure::Expired(format!(
            "Signature not yet current: {amz_date} is still later than {} ({now_text} + 5 min.)",
            format_amz_date(now + MAX_SKEW)
        )));
    }
    Ok(())
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header value trimmed, with runs of spaces folded to one.
fn push_trimmed(value: &[u8], out: &mut String) {
    let text = String::from_utf8_lossy(value);
    let mut first = true;
    for word in text.split_ascii_whitespace() {
        if !first {
            out.push(' ');
        }
        out.push_str(word);
        first = false;
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters (and `/` in a
/// path). The path arrives already encoded and is encoded again, as the AWS
/// SDKs do for every service but S3.
fn uri_encode(text: &str, encode_slash: bool, out: &mut String) {
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_pair = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex_pair) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parameters decoded, encoded strictly and sorted by name, then value.
fn canonical_query(query: &str, out: &mut String) {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let mut name = String::new();
            let mut value = String::new();
            uri_encode(&percent_decode(k), true, &mut name);
            uri_encode(&percent_decode(v), true, &mut value);
            (name, value)
        })
        .collect();
    pairs.sort();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` to a time.
pub fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    // Fixed widths, digits only: chrono's own %Y would take any number of digits.
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(i32::try_from(num(0..4)?).ok()?, num(4..6)?, num(6..8)?)?;
    let time = date.and_hms_opt(num(9..11)?, num(11..13)?, num(13..15)?)?;
    Some(time.and_utc().into())
}

pub fn format_amz_date(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time)
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::{AccessKey, Grant};
    use axum::http::HeaderValue;

    #[test]
    fn dates_round_trip() {
        for text in ["20150830T123600Z", "20261203T164616Z", "20000229T000000Z"] {
            let t = parse_amz_date(text).expect("valid");
            assert_eq!(format_amz_date(t), text);
        }
        assert!(parse_amz_date("2015-08-30T12:36:00Z").is_none());
        assert!(parse_amz_date("20151330T123600Z").is_none());
    }

    /// AWS's published example (the "get-vanilla-query-order-key-case" shape
    /// of the SigV4 test suite, with the documented secret).
    #[test]
    fn the_documented_example_verifies() {
        let key = AccessKey::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            vec![Grant::parse("streams:read").expect("valid")],
        )
        .expect("valid");
        let keys = KeyRing::new(vec![key]).expect("valid");
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";
        let request = Signed {
            method: "GET",
            path: "/",
            query: "Param2=value2&Param1=value1",
            headers: &headers,
            body: b"",
        };
        let rules = Rules {
            service: None,
            must_sign: &[],
        };
        let now = parse_amz_date("20150830T123900Z").expect("valid");
        let key = verify(&keys, auth, &request, &rules, now).expect("valid");
        assert_eq!(key.id, "AKIDEXAMPLE");

        let later = parse_amz_date("20150830T124200Z").expect("valid");
        assert!(matches!(
            verify(&keys, auth, &request, &rules, later),
            Err(Failure::Expired(_))
        ));
        let tampered = Signed {
            query: "Param2=value2&Param1=value3",
            ..request
        };
        assert!(matches!(
            verify(&keys, auth, &tampered, &rules, now),
            Err(Failure::Mismatch(_))
        ));
        let other = auth.replace("AKIDEXAMPLE", "AKIDOTHER");
        assert!(matches!(
            verify(&keys, &other, &request, &rules, now),
            Err(Failure::UnknownKey(_))
        ));
        let kinesis = Rules {
            service: Some("kinesis"),
            must_sign: &[],
        };
        assert!(matches!(
            verify(&keys, auth, &request, &kinesis, now),
            Err(Failure::Incomplete(_))
        ));
    }

    #[test]
    fn malformed_headers_are_incomplete_not_panics() {
        let keys = KeyRing::default();
        let headers = HeaderMap::new();
        let request = Signed {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: b"{}",
        };
        let rules = Rules {
            service: None,
            must_sign: &[],
        };
        let long = format!("AWS4-HMAC-SHA256 Credential={}", "a/".repeat(30_000));
        for bad in [
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=A/B",
            "AWS4-HMAC-SHA256 Credential=K/20150830/r/s/aws4_request, SignedHeaders=host, Signature=zz",
            "AWS4-HMAC-SHA256 Credential=K/2015/r/s/aws4_request, SignedHeaders=host, Signature=",
            "AWS4-HMAC-SHA256 Credential=K/20150830/r/s/aws4_request, SignedHeaders=Host, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            "AWS4-HMAC-SHA256 Credential=K/20150830/r/s/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            "AWS4-HMAC-SHA256 Junk=1",
            long.as_str(),
        ] {
            let outcome = verify(&keys, bad, &request, &rules, SystemTime::now());
            assert!(matches!(outcome, Err(Failure::Incomplete(_))), "{bad:.80}");
        }
    }

    #[test]
    fn queries_are_canonical() {
        let mut out = String::new();
        canonical_query("b=2&a=x%20y&a=1&c", &mut out);
        assert_eq!(out, "a=1&a=x%20y&b=2&c=");
        let mut out = String::new();
        uri_encode("/v1/streams/a b/records", false, &mut out);
        assert_eq!(out, "/v1/streams/a%20b/records");
    }
}
