//! `subprocess` steps end to end: the team's own Python program reads the event, its answer is
//! posted to the partner by the next step; exit 75 is retried, other exits, oversized or
//! non-JSON output are dead-lettered with the reason, a program that hangs is killed with its
//! whole process group. In `persistent` mode long-lived copies serve the events, and a copy
//! killed mid-way is replaced without losing any.

use std::{path::Path, time::Duration};

use serde_json::{Value, json};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::harness::*;

const ENRICH: &str = r#"
import json, os, sys, time

doc = json.load(sys.stdin)
assert doc["version"] == 1
event = doc["event"]
order = event["body"]["order"]
mode = order.get("mode", "ok")
state = os.path.join(os.environ["STATE_DIR"], order["id"])
runs = int(open(state).read()) + 1 if os.path.exists(state) else 1
open(state, "w").write(str(runs))
# No credential reaches the program: not the sender's, and only the variables it was given.
if "authorization" in event["headers"]:
    sys.exit(3)
if set(os.environ) - {"LC_CTYPE"} != {"STATE_DIR", "API_TOKEN"}:
    sys.exit(4)
if os.environ["API_TOKEN"] != "erp-client-secret-value":
    sys.exit(5)
if mode == "tempfail" and runs <= 2:
    print("partner lookup busy", file=sys.stderr)
    sys.exit(75)
if mode == "fail":
    print("cannot enrich order %s with %s: customer unknown" % (order["id"], os.environ["API_TOKEN"]), file=sys.stderr)
    sys.exit(1)
if mode == "hang":
    import subprocess
    child = subprocess.Popen(["/bin/sleep", "300"])
    with open(state + ".pids", "a") as f:
        f.write("%d\n%d\n" % (os.getpid(), child.pid))
    time.sleep(300)
if mode == "big":
    print("[" + ",".join(["1"] * 100000) + "]")
    sys.exit(0)
if mode == "text":
    print("done!")
    sys.exit(0)
print(json.dumps({"customer": order["customer"].upper(), "tier": "gold", "runs": runs,
                  "type": event["type"]}))
"#;

fn config(partner: &str, auth: &str, python: &str, dir: &Path) -> String {
    shop_config(
        partner,
        auth,
        &format!(
            r#"
[[routes]]
event = "order.created"
handlers = ["enrich"]

[handlers.enrich]
max_deliver = 3
backoff = ["200ms"]

[[handlers.enrich.steps]]
type = "subprocess"
name = "enrich"
command = ["{python}", "enrich.py"]
env = {{ STATE_DIR = "{dir}", API_TOKEN = "${{env:ERP_CLIENT_SECRET}}" }}
timeout = "1s"
max_output_bytes = 65536

[[handlers.enrich.steps]]
type = "http"
connection = "erp"
path = {{ jq = '"/v1/customers/\(.order.id)"' }}
body = {{ jq = '{{ order: .order.id, customer: $steps.enrich.result.customer, tier: $steps.enrich.result.tier, runs: $steps.enrich.result.runs, type: $steps.enrich.result.type }}' }}
"#,
            dir = dir.display()
        ),
    )
}

#[tokio::test]
async fn a_python_program_enriches_the_event_and_its_failures_say_why() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("enrich.py"), ENRICH)?;
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&partner)
        .await;
    let config = config(
        &partner.uri(),
        &auth.uri(),
        hookyard_testkit::python(),
        dir.path(),
    );
    // The secret in the program's env is one the worker resolves; see `harness::env`.
    let stack = Stack::start_in(&config, |_| {}, dir.path()).await?;

    let modes = ["ok", "tempfail", "fail", "hang", "big", "text"];
    for (n, mode) in modes.iter().enumerate() {
        let body = json!({"order": {"id": format!("o-{n}"), "mode": mode, "customer": "ada"}});
        stack
            .accepted("order.created", &format!("prog-{n}"), &body)
            .await?;
    }
    hookyard_testkit::wait_for(PATIENCE, "4 dead letters and 2 calls", || async {
        stack.dead_letters("enrich").await.unwrap_or_default().len() == 4
            && partner.received_requests().await.unwrap_or_default().len() == 2
    })
    .await?;
    hookyard_testkit::wait_for(PATIENCE, "enrich idle", || stack.handler_idle("enrich")).await?;

    // The program's answer went to the partner, once per event; exit 75 twice, then success.
    for (id, runs) in [("o-0", 1), ("o-1", 3)] {
        let calls = requests_to(&partner, &format!("/v1/customers/{id}")).await;
        assert_eq!(calls.len(), 1, "one partner call for {id}");
        let body: Value = serde_json::from_slice(&calls[0].body)?;
        assert_eq!(
            body,
            json!({"order": id, "customer": "ADA", "tier": "gold", "runs": runs, "type": "order.created"})
        );
    }

    let letters = stack.dead_letters("enrich").await?;
    let letter = |id: &str| {
        letters
            .iter()
            .find(|l| {
                l.event
                    .as_ref()
                    .is_some_and(|e| String::from_utf8_lossy(&e.body).contains(id))
            })
            .unwrap_or_else(|| panic!("a dead letter for {id}"))
    };
    let failed = letter("\"o-2\"");
    assert_eq!(failed.reason, "permanent_failure");
    assert_eq!(failed.attempts, 1);
    assert!(
        failed.error.contains("exit status 1") && failed.error.contains("customer unknown"),
        "{}",
        failed.error
    );
    assert!(
        failed.error.contains("[redacted]") && !failed.error.contains(ERP_CLIENT_SECRET),
        "the secret the program printed is redacted: {}",
        failed.error
    );
    let hung = letter("\"o-3\"");
    assert_eq!(hung.reason, "retries_exhausted", "a timeout is retried");
    assert_eq!(hung.attempts, 3);
    assert!(hung.error.contains("timed out after 1s"), "{}", hung.error);
    let big = letter("\"o-4\"");
    assert_eq!(big.reason, "permanent_failure");
    assert!(
        big.error.contains("output exceeds 65536 bytes"),
        "{}",
        big.error
    );
    let text = letter("\"o-5\"");
    assert_eq!(text.reason, "permanent_failure");
    assert!(text.error.contains("output is not JSON"), "{}", text.error);

    // Every process of the hung program's groups (the program and the child it started) is gone.
    let pids = std::fs::read_to_string(dir.path().join("o-3.pids"))?;
    let pids: Vec<u32> = pids.lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(pids.len(), 6, "two processes per attempt, three attempts");
    hookyard_testkit::wait_for(Duration::from_secs(5), "hung processes gone", || async {
        pids.iter().all(|pid| gone(*pid))
    })
    .await?;
    assert_eq!(std::fs::read_to_string(dir.path().join("o-3"))?, "3");
    stack.stop().await;
    Ok(())
}

/// True when the process no longer runs (absent, or a zombie nobody reaped yet).
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

const LINES: &str = r#"
import json, os, sys

log = open(os.path.join(os.environ["STATE_DIR"], "seen-%d" % os.getpid()), "a")
open(os.path.join(os.environ["STATE_DIR"], "pid-%d" % os.getpid()), "w").close()
for line in sys.stdin:
    request = json.loads(line)
    order = request["input"]["event"]["body"]["order"]
    log.write(order["id"] + "\n")
    log.flush()
    print(json.dumps({"id": request["id"], "result": {"n": order["n"] * 2, "pid": os.getpid()}}), flush=True)
"#;

#[tokio::test]
async fn persistent_copies_serve_every_event_and_a_killed_copy_is_replaced() -> anyhow::Result<()> {
    const EVENTS: usize = 1000;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("lines.py"), LINES)?;
    let auth = auth_server("tok", 3600).await;
    let partner = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&partner)
        .await;
    let handler = format!(
        r#"
[[routes]]
event = "order.created"
handlers = ["lines"]

[handlers.lines]
concurrency = 8
backoff = ["100ms"]

[[handlers.lines.steps]]
type = "subprocess"
name = "double"
command = ["{python}", "lines.py"]
env = {{ STATE_DIR = "{dir}" }}
mode = "persistent"
processes = 4

[[handlers.lines.steps]]
type = "http"
connection = "erp"
path = "/v1/lines"
body = {{ jq = '{{ id: .order.id, n: $steps.double.result.n }}' }}
"#,
        python = hookyard_testkit::python(),
        dir = dir.path().display()
    );
    let config = shop_config(&partner.uri(), &auth.uri(), &handler);
    let stack = Stack::start_in(&config, |_| {}, dir.path()).await?;

    let send = |from: usize, to: usize| {
        let stack = &stack;
        async move {
            for n in from..to {
                let body = json!({"order": {"id": format!("l-{n}"), "n": n}});
                stack
                    .accepted("order.created", &format!("line-{n}"), &body)
                    .await?;
            }
            anyhow::Ok(())
        }
    };
    send(0, EVENTS / 2).await?;
    // Kill one long-lived copy while events flow.
    let copies = || -> Vec<u32> {
        std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_prefix("pid-")?
                    .parse()
                    .ok()
            })
            .collect()
    };
    hookyard_testkit::wait_for(PATIENCE, "4 copies started", || async {
        copies().len() == 4
    })
    .await?;
    let victim = copies()[0];
    let killed = std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()?;
    assert!(killed.success());
    send(EVENTS / 2, EVENTS).await?;

    hookyard_testkit::wait_for(PATIENCE * 2, "every line delivered", || async {
        let calls = requests_to(&partner, "/v1/lines").await;
        counts(calls.iter().filter_map(|c| {
            let v: Value = serde_json::from_slice(&c.body).ok()?;
            v["id"].as_str().map(str::to_owned)
        }))
        .len()
            == EVENTS
    })
    .await?;
    hookyard_testkit::wait_for(PATIENCE, "lines idle", || stack.handler_idle("lines")).await?;

    let calls = requests_to(&partner, "/v1/lines").await;
    assert_eq!(calls.len(), EVENTS, "one partner call per event");
    for c in &calls {
        let v: Value = serde_json::from_slice(&c.body)?;
        let n: u64 = v["id"]
            .as_str()
            .and_then(|i| i.strip_prefix("l-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX);
        assert_eq!(v["n"], json!(n * 2), "the program's answer for {v}");
    }
    assert!(stack.dead_letters("lines").await?.is_empty());
    // A copy replaced the killed one; every event was processed once by the programs, except
    // at most the one the killed copy had in flight.
    assert!(copies().len() >= 5, "a new copy replaced the killed one");
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for entry in std::fs::read_dir(dir.path())? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("seen-") {
            for id in std::fs::read_to_string(entry.path())?.lines() {
                *seen.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    assert_eq!(seen.len(), EVENTS);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.len() <= 1, "processed twice: {twice:?}");
    stack.stop().await;
    Ok(())
}
