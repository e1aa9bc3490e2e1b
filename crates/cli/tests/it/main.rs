//! `hookyard validate` and `hookyard connection test`, run as the real binary.

mod connection;
mod poll;

use std::process::Command;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/shop-erp-carrier.toml"
);

fn validate(path: &std::path::Path, with_secrets: bool) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookyard"));
    cmd.arg("validate").arg(path).env_clear();
    if with_secrets {
        cmd.env("SHOP_WEBHOOK_PASSWORD", "p1")
            .env("ERP_CLIENT_SECRET", "p2")
            .env("CARRIER_PASSWORD", "p3");
    }
    let out = cmd.output().expect("runs hookyard");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn variant(edit: impl Fn(String) -> String) -> tempfile::NamedTempFile {
    let text = edit(std::fs::read_to_string(EXAMPLE).expect("example"));
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), text).expect("write");
    file
}

#[test]
fn the_example_is_valid() {
    let (ok, out) = validate(EXAMPLE.as_ref(), true);
    assert!(ok, "{out}");
}

#[test]
fn a_missing_secret_is_named_with_its_key_and_variable() {
    let (ok, out) = validate(EXAMPLE.as_ref(), false);
    assert!(!ok);
    for key in [
        "sources.shop.auth.password",
        "connections.erp.auth.client_secret",
        "connections.carrier.auth.password",
    ] {
        assert!(out.contains(key), "{key} not in: {out}");
    }
    assert!(out.contains("ERP_CLIENT_SECRET"), "{out}");
}

#[test]
fn unknown_key_missing_handler_and_missing_connection_are_each_named() {
    let file = variant(|t| {
        t.replacen("timeout = \"10s\"", "timeout = \"10s\"\ntimout = \"5s\"", 1)
            .replace("handlers = [\"shipments\"]", "handlers = [\"shipping\"]")
            .replace("connection = \"carrier\"", "connection = \"courier\"")
    });
    let (ok, out) = validate(file.path(), true);
    assert!(!ok);
    for key in [
        "connections.erp.timout",
        "routes[3].handlers[0]",
        "handlers.shipments.steps[0].connection",
    ] {
        assert!(out.contains(key), "{key} not in: {out}");
    }
    assert!(out.contains("3 problem(s)"), "{out}");
}

#[test]
fn secret_values_never_appear_in_the_output() {
    let file = variant(|t| t.replace("\"${env:CARRIER_PASSWORD}\"", "\"literal-secret-xyz\""));
    let (ok, out) = validate(file.path(), true);
    assert!(!ok);
    assert!(!out.contains("literal-secret-xyz"), "{out}");
    assert!(out.contains("line "), "{out}");
}

#[test]
fn an_unreadable_file_fails() {
    let (ok, _) = validate("/nonexistent/integration.toml".as_ref(), true);
    assert!(!ok);
}

#[test]
fn a_subprocess_program_that_cannot_run_is_named_with_its_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("data.txt"), "not a program").expect("write");
    let script = dir.path().join("ok.sh");
    std::fs::write(&script, "#!/bin/sh\necho '{}'\n").expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let handler = |name: &str, command: &str| {
        format!(
            "[handlers.{name}]\nsteps = [{{ type = \"subprocess\", command = [\"{command}\"] }}]\n"
        )
    };
    let text = [
        handler("missing", "./missing.py"),
        handler("plain", "./data.txt"),
        handler("nowhere", "no-such-program-anywhere"),
        handler("fine", "./ok.sh"),
    ]
    .concat();
    let file = dir.path().join("integration.toml");
    std::fs::write(&file, text).expect("write");
    let (ok, out) = validate(&file, false);
    assert!(!ok, "{out}");
    for (key, says) in [
        ("handlers.missing.steps[0].command", "missing.py"),
        ("handlers.plain.steps[0].command", "data.txt"),
        (
            "handlers.nowhere.steps[0].command",
            "no-such-program-anywhere",
        ),
    ] {
        let line = out.lines().find(|l| l.contains(key));
        assert!(
            line.is_some_and(|l| l.contains(says)),
            "{key} naming {says} not in: {out}"
        );
    }
    assert!(!out.contains("handlers.fine"), "{out}");
    assert!(out.contains("3 problem(s)"), "{out}");

    let skipped = Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["validate", "--skip-programs"])
        .arg(&file)
        .env_clear()
        .output()
        .expect("runs hookyard");
    assert!(skipped.status.success(), "{skipped:?}");
}

#[test]
fn a_retry_span_shorter_than_the_breaker_cool_down_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("integration.toml");
    std::fs::write(
        &file,
        "[handlers.h]\nmax_deliver = 2\nbackoff = [\"1s\"]\nsteps = [{ type = \"http\", connection = \"erp\", path = \"/x\" }]\n\n[connections.erp]\nbase_url = \"https://erp.example\"\n",
    )
    .expect("write");
    let (ok, out) = validate(&file, false);
    assert!(ok, "{out}");
    assert!(
        out.contains("warning: handlers.h.backoff") && out.contains("cool-down 30s"),
        "{out}"
    );
}
