//! boto3 (JSON 1.1 through botocore) against a running server.

use std::process::Command;

use crate::util::{Server, TEST_KEY_ID, TEST_SECRET};

#[test]
fn boto3_round_trips_records_through_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/boto3_round_trip.py");
    let output = Command::new("python3")
        .arg(script)
        .args([&server.endpoint, TEST_KEY_ID, TEST_SECRET])
        .output()
        .expect("python3 must be installed (.ci/run installs boto3)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "boto3 script failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("boto3 round trip ok: 50 records"),
        "{stdout}"
    );
}

#[test]
fn boto3_verifies_a_self_signed_certificate_and_plain_http_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--tls-self-signed"]);
    assert!(
        server.endpoint.starts_with("https://"),
        "{}",
        server.endpoint
    );
    // the fingerprint printed is the one served
    let printed = server
        .preamble
        .iter()
        .find_map(|l| l.split_whitespace().skip_while(|w| *w != "SHA-256").nth(1))
        .expect("fingerprint line")
        .to_string();
    let pem = dir.path().join("self-signed-cert.pem");
    let served = Command::new("python3")
        .args([
            "-c",
            "import hashlib, ssl, sys; host, port = sys.argv[1].rsplit(':', 1); der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, int(port)))); print(':'.join(f'{b:02X}' for b in hashlib.sha256(der).digest()))",
            server.endpoint.trim_start_matches("https://"),
        ])
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&served.stdout).trim(), printed);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/boto3_round_trip.py");
    let output = Command::new("python3")
        .arg(script)
        .args([&server.endpoint, TEST_KEY_ID, TEST_SECRET])
        .arg(&pem)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "boto3 over TLS failed:\n{stdout}\n{stderr}"
    );

    // plain HTTP to the TLS port gets no answer
    let plain = server.endpoint.replacen("https://", "http://", 1);
    let refused = crate::util::agent().get(&format!("{plain}/health")).call();
    assert!(refused.is_err(), "plain HTTP was answered: {refused:?}");
}
