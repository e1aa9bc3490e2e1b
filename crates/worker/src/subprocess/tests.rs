//! Tests with real programs (Python 3 and `/bin/sh`), no mocks.

use std::{
    collections::HashSet,
    ffi::OsStr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::json;
use tempfile::TempDir;

use super::{Pool, Program, ResolveError, RunError, process, resolve, run_once};

fn python3() -> &'static str {
    hookyard_testkit::python()
}

/// A program with test defaults: a 2 s timeout, a 1 MiB output limit, only PATH set.
fn program(command: &[&str]) -> Program {
    Program {
        command: command.iter().map(|&s| s.to_owned()).collect(),
        cwd: None,
        env: vec![("PATH".to_owned(), "/usr/bin:/bin".to_owned())],
        timeout: Duration::from_secs(2),
        max_output_bytes: 1 << 20,
        secrets: Vec::new(),
    }
}

/// `sh -c script sh args…`.
fn sh(script: &str, args: &[&str]) -> Program {
    let mut command = vec!["/bin/sh", "-c", script, "sh"];
    command.extend_from_slice(args);
    program(&command)
}

/// Writes `source` into `dir` and returns the program running it with `python3` and `args`.
fn python(dir: &TempDir, source: &str, args: &[&str]) -> Program {
    let script = dir.path().join("program.py");
    std::fs::write(&script, source).expect("write script");
    let script = script.to_str().expect("utf-8 path").to_owned();
    let mut command = vec![python3(), &script];
    command.extend_from_slice(args);
    program(&command)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Whether `pid` is a live process (a zombie is dead: only its parent's `wait` is missing, and
/// for a reparented grandchild that parent is not us).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Waits until `pid` is dead: a SIGKILL takes effect when the kernel next schedules the
/// process, not at the `kill` call. Fails after 2 s.
async fn assert_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} still alive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for a file a program writes (atomically, by rename) and returns the pids in it.
async fn read_pids(path: &Path) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text
                .split_whitespace()
                .map(|pid| pid.parse().expect("pid"))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts `sleep 100` in the background, writes "<sh pid> <sleep pid>" to $1, then runs the
/// rest of the script.
fn with_background_sleep(rest: &str) -> String {
    format!("sleep 100 & echo $$ $! > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"; {rest}")
}

/// The worker runs steps on spawned tasks: the futures must be `Send` and the pool shareable.
#[test]
fn futures_are_send_and_the_pool_is_shareable() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_sync<T: Send + Sync>(_: &T) {}
    let program = program(&["/bin/true"]);
    assert_send(&run_once(&program, b""));
    let pool = Pool::new(program, 1);
    assert_sync(&pool);
    let input = json!(null);
    assert_send(&pool.call("id", &input));
    assert_send(&pool.shutdown());
}

#[tokio::test]
async fn success_returns_an_enrichment_of_the_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = python(
        &dir,
        "import json, sys\n\
         doc = json.load(sys.stdin)\n\
         json.dump({'greeting': 'hello ' + doc['name'], 'length': len(doc['name'])}, sys.stdout)\n",
        &[],
    );
    let result = run_once(&program, br#"{"name":"ada"}"#).await.expect("ok");
    assert_eq!(result, json!({"greeting": "hello ada", "length": 3}));
}

#[tokio::test]
async fn surrounding_whitespace_is_allowed() {
    let result = run_once(&sh(r#"printf '\n  [1, 2]  \n\n'"#, &[]), b"")
        .await
        .expect("ok");
    assert_eq!(result, json!([1, 2]));
}

#[tokio::test]
async fn exit_75_is_retryable() {
    let error = run_once(&sh("echo busy >&2; exit 75", &[]), b"{}")
        .await
        .expect_err("exit 75");
    assert!(matches!(error, RunError::TempFail { .. }), "{error:?}");
    assert!(error.retryable());
    assert_eq!(error.label(), "temp_fail");
    assert_eq!(
        error.to_string(),
        "exit status 75 (temporary failure); stderr: busy"
    );
}

#[tokio::test]
async fn exit_1_is_permanent_with_the_stderr_excerpt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = python(
        &dir,
        "import sys\nsys.stderr.write('bad input: missing field\\n')\nsys.exit(1)\n",
        &[],
    );
    let error = run_once(&program, b"{}").await.expect_err("exit 1");
    assert!(matches!(error, RunError::Exit { code: 1, .. }), "{error:?}");
    assert!(!error.retryable());
    assert_eq!(error.label(), "exit");
    assert_eq!(
        error.to_string(),
        "exit status 1; stderr: bad input: missing field"
    );
}

#[tokio::test]
async fn secrets_in_stderr_are_redacted() {
    let mut program = sh("echo 'token=s3cr3t-value rejected' >&2; exit 1", &[]);
    program.secrets = vec!["s3cr3t-value".to_owned(), String::new()];
    let error = run_once(&program, b"{}").await.expect_err("exit 1");
    let text = error.to_string();
    assert_eq!(text, "exit status 1; stderr: token=[redacted] rejected");
}

#[tokio::test]
async fn killed_by_a_signal_is_retryable() {
    let error = run_once(&sh("kill -9 $$", &[]), b"{}")
        .await
        .expect_err("killed");
    assert!(
        matches!(error, RunError::Signal { signal: 9, .. }),
        "{error:?}"
    );
    assert!(error.retryable());
    assert_eq!(error.label(), "signal");
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("pids");
    let mut program = sh(&with_background_sleep("sleep 100"), &[path_str(&pids)]);
    program.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let error = run_once(&program, b"{}").await.expect_err("timeout");
    assert!(started.elapsed() < Duration::from_secs(2), "returned late");
    assert!(matches!(error, RunError::Timeout { .. }), "{error:?}");
    assert!(error.retryable());
    assert_eq!(error.label(), "timeout");
    assert_eq!(error.to_string(), "timed out after 1s");
    for pid in read_pids(&pids).await {
        assert_gone(pid).await;
    }
}

#[tokio::test]
async fn leftover_background_children_are_killed_after_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("pids");
    // The background sleep keeps stdout open: without the group kill this would time out.
    let program = sh(
        &with_background_sleep(r#"echo '{"ok":true}'"#),
        &[path_str(&pids)],
    );
    let result = run_once(&program, b"{}").await.expect("ok");
    assert_eq!(result, json!({"ok": true}));
    for pid in read_pids(&pids).await {
        assert_gone(pid).await;
    }
}

#[tokio::test]
async fn dropping_the_future_kills_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("pids");
    let program = sh(&with_background_sleep("sleep 100"), &[path_str(&pids)]);
    let started = tokio::select! {
        outcome = run_once(&program, b"{}") => panic!("ended by itself: {outcome:?}"),
        started = read_pids(&pids) => started,
    };
    for pid in started {
        assert_gone(pid).await;
    }
}

#[tokio::test]
async fn endless_output_over_the_limit_is_stopped() {
    let mut program = sh("yes", &[]);
    program.max_output_bytes = 1000;
    let error = run_once(&program, b"").await.expect_err("too large");
    assert!(
        matches!(error, RunError::OutputTooLarge { limit: 1000, .. }),
        "{error:?}"
    );
    assert!(!error.retryable());
    assert_eq!(error.label(), "output_too_large");
    assert_eq!(error.to_string(), "output exceeds 1000 bytes");
}

#[tokio::test]
async fn output_over_the_limit_from_a_successful_program_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut program = python(&dir, "import json\nprint(json.dumps('x' * 2000))\n", &[]);
    program.max_output_bytes = 1000;
    let error = run_once(&program, b"").await.expect_err("too large");
    assert_eq!(error.label(), "output_too_large");
}

#[tokio::test]
async fn output_that_is_not_json_is_permanent() {
    for script in ["echo hello", "exit 0", r#"echo '{} {}'"#] {
        let error = run_once(&sh(script, &[]), b"").await.expect_err("not json");
        assert!(
            matches!(error, RunError::NotJson { .. }),
            "{script}: {error:?}"
        );
        assert!(!error.retryable());
        assert_eq!(error.label(), "not_json");
        assert!(
            error.to_string().starts_with("output is not JSON: "),
            "{error}"
        );
    }
}

#[tokio::test]
async fn only_the_listed_environment_variables_are_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut program = python(
        &dir,
        "import json, os\nprint(json.dumps(sorted(os.environ)))\n",
        &[],
    );
    // LC_ALL keeps Python from adding LC_CTYPE itself (PEP 538 locale coercion).
    program.env = vec![
        ("HOOKYARD_TOKEN".to_owned(), "t".to_owned()),
        ("LC_ALL".to_owned(), "C.UTF-8".to_owned()),
    ];
    let result = run_once(&program, b"").await.expect("ok");
    assert_eq!(result, json!(["HOOKYARD_TOKEN", "LC_ALL"]));
}

#[tokio::test]
async fn a_program_that_ignores_a_large_input_succeeds() {
    let input = vec![b' '; 1 << 20];
    let result = run_once(&sh(r#"echo '{"ignored":true}'"#, &[]), &input)
        .await
        .expect("ok");
    assert_eq!(result, json!({"ignored": true}));
}

#[tokio::test]
async fn huge_stderr_does_not_block_and_the_excerpt_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = python(
        &dir,
        "import sys\nsys.stderr.write('e' * (10 << 20))\nsys.stderr.write('THE END')\nsys.exit(1)\n",
        &[],
    );
    let error = run_once(&program, b"").await.expect_err("exit 1");
    assert!(matches!(error, RunError::Exit { code: 1, .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.len() <= process::STDERR_TAIL + 64,
        "{} bytes",
        text.len()
    );
    assert!(
        text.starts_with("exit status 1; stderr: …eee"),
        "{text:.80}"
    );
    assert!(text.ends_with("eeeTHE END"), "{text:.80}");
}

#[tokio::test]
async fn a_missing_program_is_a_retryable_spawn_error_naming_it() {
    let error = run_once(&program(&["/nonexistent/prog"]), b"")
        .await
        .expect_err("spawn");
    assert_eq!(error.label(), "spawn");
    assert!(error.retryable());
    assert!(
        error
            .to_string()
            .starts_with("cannot start /nonexistent/prog: "),
        "{error}"
    );
}

#[test]
fn resolve_finds_python3_on_path() {
    let path_var = std::env::var_os("PATH");
    let found = resolve("python3", None, path_var.as_deref()).expect("found");
    assert_eq!(found.file_name(), Some(OsStr::new("python3")));
    assert!(found.is_file());
}

#[test]
fn resolve_skips_a_non_executable_candidate_like_a_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = (dir.path().join("a"), dir.path().join("b"));
    for (folder, mode) in [(&first, 0o644), (&second, 0o755)] {
        std::fs::create_dir(folder).expect("mkdir");
        let tool = folder.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let path_var = std::env::join_paths([&first, &second]).expect("join");
    let found = resolve("tool", None, Some(&path_var)).expect("found");
    assert_eq!(found, second.join("tool"));
}

#[test]
fn resolve_refuses_a_missing_file_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = resolve("./missing.sh", Some(dir.path()), None).expect_err("missing");
    let path = dir.path().join("./missing.sh");
    assert!(matches!(&error, ResolveError::NotFound { path: p } if *p == path));
    assert_eq!(
        error.to_string(),
        format!("{}: no such file", path.display())
    );

    let error =
        resolve("no-such-program-x", None, Some(OsStr::new("/usr/bin:/bin"))).expect_err("missing");
    assert_eq!(error.to_string(), "no-such-program-x: not found on PATH");
}

#[test]
fn resolve_refuses_a_non_executable_file_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("script.py");
    std::fs::write(&script, "print(1)\n").expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let error = resolve(path_str(&script), None, None).expect_err("not executable");
    assert_eq!(
        error.to_string(),
        format!("{}: not executable", script.display())
    );
    let error = resolve(path_str(dir.path()), None, None).expect_err("a directory");
    assert!(matches!(error, ResolveError::NotAFile { .. }), "{error:?}");
}

#[test]
fn resolve_takes_a_relative_path_from_cwd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tool = dir.path().join("bin/tool");
    std::fs::create_dir(dir.path().join("bin")).expect("mkdir");
    std::fs::write(&tool, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let found = resolve("bin/tool", Some(dir.path()), None).expect("found");
    assert_eq!(found, tool);
}

#[test]
fn excerpt_starts_on_a_char_boundary_after_a_cut() {
    // "é" is 0xC3 0xA9: a tail starting at 0xA9 must not show a replacement character.
    let raw = [&[0xA9][..], "é ok".as_bytes()].concat();
    assert_eq!(process::excerpt(&raw, true, &[]), "…é ok");
}

#[test]
fn excerpt_redacts_a_secret_straddling_the_cut() {
    let secrets = [b"my-secret".to_vec()];
    assert_eq!(
        process::excerpt(b"cret then my-secret again", true, &secrets),
        "…[redacted] then [redacted] again"
    );
}

#[test]
fn excerpt_stays_bounded_when_redaction_grows_it() {
    let raw = vec![b'a'; process::STDERR_TAIL];
    let text = process::excerpt(&raw, false, &[b"a".to_vec()]);
    assert!(
        text.len() <= process::STDERR_TAIL + "…".len(),
        "{}",
        text.len()
    );
    assert!(text.starts_with('…'), "{text:.20}");
}

/// A persistent program: records "<pid> <grandchild pid>" in `copy-<pid>` under argv[1] when
/// given (starting a `sleep 100` grandchild then), then answers requests until EOF, behaving
/// as the input says.
const PERSISTENT: &str = r#"
import json, os, subprocess, sys, time
pids = sys.argv[1] if len(sys.argv) > 1 else None
if pids:
    child = subprocess.Popen(["sleep", "100"])
    tmp = os.path.join(pids, "tmp-%d" % os.getpid())
    with open(tmp, "w") as f:
        f.write("%d %d" % (os.getpid(), child.pid))
    os.rename(tmp, os.path.join(pids, "copy-%d" % os.getpid()))
while True:
    line = sys.stdin.readline()
    if not line:
        break
    req = json.loads(line)
    inp = req["input"]
    if inp.get("exit"):
        sys.stderr.write("giving up\n")
        sys.exit(3)
    if inp.get("sleep"):
        time.sleep(100)
    if "barrier" in inp:
        deadline = time.time() + 5
        while len([n for n in os.listdir(pids) if n.startswith("copy-")]) < inp["barrier"]:
            if time.time() > deadline:
                sys.exit(4)
            time.sleep(0.01)
    if "error" in inp:
        reply = {"id": req["id"], "error": inp["error"]}
        if "retry" in inp:
            reply["retry"] = inp["retry"]
    elif inp.get("huge"):
        reply = {"id": req["id"], "result": "x" * 5000}
    elif inp.get("wrong_id"):
        reply = {"id": "not-" + req["id"], "result": 1}
    else:
        reply = {"id": req["id"], "result": {"n": inp.get("n"), "pid": os.getpid()}}
    print(json.dumps(reply), flush=True)
"#;

fn persistent(dir: &TempDir, args: &[&str]) -> Program {
    python(dir, PERSISTENT, args)
}

/// Calls with `{"n": n}` and returns the pid of the copy that answered.
async fn pid_of_call(pool: &Pool, n: i64) -> i64 {
    let result = pool
        .call(&format!("req-{n}"), &json!({ "n": n }))
        .await
        .expect("ok");
    assert_eq!(result["n"], n);
    result["pid"].as_i64().expect("pid")
}

#[tokio::test]
async fn persistent_concurrent_calls_get_their_own_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = Pool::new(persistent(&dir, &[]), 4);
    let calls = (0..200).map(|n| {
        let pool = &pool;
        async move {
            let result = pool.call(&format!("req-{n}"), &json!({ "n": n })).await;
            (n, result)
        }
    });
    let mut pids = HashSet::new();
    for (n, result) in futures::future::join_all(calls).await {
        let result = result.expect("answered");
        assert_eq!(result["n"], n, "request {n} got {result}");
        pids.insert(result["pid"].as_i64().expect("pid"));
    }
    assert!((1..=4).contains(&pids.len()), "{} copies", pids.len());
    pool.shutdown().await;
}

#[tokio::test]
async fn persistent_copy_that_exits_fails_retryably_and_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = Pool::new(persistent(&dir, &[]), 1);
    let first = pid_of_call(&pool, 1).await;
    let error = pool
        .call("req-exit", &json!({"exit": true}))
        .await
        .expect_err("exited");
    assert!(matches!(error, RunError::Died { .. }), "{error:?}");
    assert!(error.retryable());
    assert_eq!(error.label(), "died");
    assert_eq!(
        error.to_string(),
        "the program stopped during the request (exit status 3); stderr: giving up"
    );
    let second = pid_of_call(&pool, 2).await;
    assert_ne!(first, second);
    assert_eq!(pid_of_call(&pool, 3).await, second);
    pool.shutdown().await;
}

#[tokio::test]
async fn persistent_timeout_kills_the_copy_and_the_pool_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut program = persistent(&dir, &[]);
    program.timeout = Duration::from_secs(1);
    let pool = Pool::new(program, 1);
    let first = pid_of_call(&pool, 1).await;
    let error = pool
        .call("req-sleep", &json!({"sleep": true}))
        .await
        .expect_err("timeout");
    assert!(matches!(error, RunError::Timeout { .. }), "{error:?}");
    assert!(error.retryable());
    assert_gone(i32::try_from(first).expect("pid")).await;
    assert_ne!(pid_of_call(&pool, 2).await, first);
    pool.shutdown().await;
}

#[tokio::test]
async fn persistent_error_replies_follow_their_retry_field_and_keep_the_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = Pool::new(persistent(&dir, &[]), 1);
    let first = pid_of_call(&pool, 1).await;
    let cases = [
        (json!({"error": "upstream busy", "retry": true}), true),
        (json!({"error": "bad record", "retry": false}), false),
        (json!({"error": "bad record"}), false),
    ];
    for (input, retryable) in cases {
        let error = pool.call("req-e", &input).await.expect_err("error reply");
        assert!(matches!(error, RunError::ProgramError { .. }), "{error:?}");
        assert_eq!(error.retryable(), retryable, "{input}");
        assert_eq!(error.label(), "program_error");
        let message = input["error"].as_str().expect("text");
        assert_eq!(
            error.to_string(),
            format!("the program reported an error: {message}")
        );
    }
    assert_eq!(pid_of_call(&pool, 2).await, first);
    pool.shutdown().await;
}

#[tokio::test]
async fn persistent_reply_over_the_limit_is_permanent_and_replaces_the_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut program = persistent(&dir, &[]);
    program.max_output_bytes = 1000;
    let pool = Pool::new(program, 1);
    let first = pid_of_call(&pool, 1).await;
    let error = pool
        .call("req-huge", &json!({"huge": true}))
        .await
        .expect_err("too large");
    assert_eq!(error.label(), "output_too_large");
    assert!(!error.retryable());
    assert_eq!(error.to_string(), "output exceeds 1000 bytes");
    assert_ne!(pid_of_call(&pool, 2).await, first);
    pool.shutdown().await;
}

#[tokio::test]
async fn persistent_reply_with_another_id_is_a_protocol_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = Pool::new(persistent(&dir, &[]), 1);
    let first = pid_of_call(&pool, 1).await;
    let error = pool
        .call("req-w", &json!({"wrong_id": true}))
        .await
        .expect_err("protocol");
    assert_eq!(error.label(), "protocol");
    assert!(!error.retryable());
    assert_eq!(
        error.to_string(),
        "protocol error: the reply's id is not the request's (req-w)"
    );
    assert_ne!(pid_of_call(&pool, 2).await, first);
    pool.shutdown().await;
}

#[tokio::test]
async fn persistent_spawn_failure_is_retryable() {
    let pool = Pool::new(program(&["/nonexistent/prog"]), 2);
    let error = pool.call("req-1", &json!({})).await.expect_err("spawn");
    assert_eq!(error.label(), "spawn");
    assert!(error.retryable());
}

#[tokio::test]
async fn persistent_shutdown_leaves_no_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pids_dir = dir.path().join("pids");
    std::fs::create_dir(&pids_dir).expect("mkdir");
    let pool = Pool::new(persistent(&dir, &[path_str(&pids_dir)]), 3);
    // Each call waits until three copies have started, so every slot gets its own copy.
    let calls = (0..3).map(|n| {
        let pool = &pool;
        async move {
            let input = json!({"barrier": 3, "n": n});
            pool.call(&format!("req-{n}"), &input).await
        }
    });
    for result in futures::future::join_all(calls).await {
        result.expect("answered");
    }
    let started = Instant::now();
    pool.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the copies did not stop on EOF"
    );
    let mut pids: Vec<i32> = Vec::new();
    for entry in std::fs::read_dir(&pids_dir).expect("read dir") {
        let path: PathBuf = entry.expect("entry").path();
        pids.extend(read_pids(&path).await);
    }
    assert_eq!(pids.len(), 6, "three copies and their children: {pids:?}");
    for pid in pids {
        assert_gone(pid).await;
    }
    let error = pool.call("late", &json!({})).await.expect_err("shut down");
    assert_eq!(error.label(), "shutdown");
}
