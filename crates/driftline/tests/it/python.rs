//! boto3 (JSON 1.1 through botocore) against a running server.

use std::process::Command;

use crate::util::Server;

#[test]
fn boto3_round_trips_records_through_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/boto3_round_trip.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&server.endpoint)
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
