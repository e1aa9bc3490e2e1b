use super::*;

fn vars(cursor: &serde_json::Value) -> PollVars<'_> {
    PollVars {
        cursor,
        now: 1_700_000_000,
    }
}

#[test]
fn filters_read_the_cursor_and_the_time() {
    let cursor = serde_json::json!("2024-01-01");
    let path: PollValue = toml::from_str::<BTreeMap<String, PollValue>>(
        r#"p = { jq = '"/v1/orders?since=\($cursor)&t=\($now)"' }"#,
    )
    .expect("parses")
    .remove("p")
    .expect("p");
    assert_eq!(
        path.eval_string(&vars(&cursor)).expect("evaluates"),
        Some("/v1/orders?since=2024-01-01&t=1700000000".to_owned())
    );
}

#[test]
fn event_is_not_a_poll_variable() {
    assert!(PollJq::compile("$event.id").is_err());
    assert!(PollJq::compile("$cursor // 0").is_ok());
}

#[test]
fn null_outputs_are_none() {
    let jq = PollJq::compile(".missing").expect("compiles");
    let null = serde_json::Value::Null;
    assert_eq!(jq.eval(&serde_json::json!({}), &vars(&null)), Ok(None));
}

#[test]
fn schedules_parse_with_or_without_seconds_and_refuse_nonsense() {
    let s = Schedule::parse("*/5 * * * *").expect("five fields");
    let t = std::time::UNIX_EPOCH + Duration::from_secs(60);
    assert_eq!(
        s.next_after(t),
        Some(std::time::UNIX_EPOCH + Duration::from_secs(300))
    );
    assert!(Schedule::parse("*/10 * * * * *").is_ok());
    assert!(Schedule::parse("every five minutes").is_err());
    assert!(Schedule::parse("61 * * * *").is_err());
    assert!(Schedule::parse("").is_err());
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let b = PollBackoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(10),
    };
    let delays: Vec<u64> = (1..=6).map(|n| b.delay(n).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
    assert_eq!(b.delay(u32::MAX), Duration::from_secs(10));
}

const VALID: &str = r#"
[sources.orders]
event_type = { jq = '"order." + .status' }

[sources.orders.poll]
connection = "erp"
path = "/v1/orders"
query = { updated_since = { jq = "$cursor" }, limit = "100" }
every = "30s"
records = ".data"
record_id = ".id"
record_version = ".updated_at"
cursor = { record = ".updated_at" }
initial_cursor = "1970-01-01T00:00:00Z"
pagination = { type = "cursor", next = ".meta.next", param = "page_token" }
max_pages = 5

[connections.erp]
base_url = "https://erp.example.com"
"#;

fn problems(text: &str) -> Vec<crate::config::Problem> {
    match crate::Integration::parse(text, &|_| None) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().to_vec(),
    }
}

fn keys(text: &str) -> Vec<String> {
    problems(text).into_iter().map(|p| p.key).collect()
}

#[test]
fn a_poll_source_parses_with_every_key() {
    let i = crate::Integration::parse(VALID, &|_| None).expect("valid");
    let poll = i.sources["orders"].poll.as_ref().expect("poll");
    assert_eq!(poll.method, "GET");
    assert_eq!(poll.every, Some(Duration::from_secs(30)));
    assert!(matches!(poll.cursor, Some(CursorFrom::Record(_))));
    assert!(matches!(poll.pagination, Pagination::Cursor { .. }));
    assert_eq!(
        poll.initial_cursor,
        serde_json::json!("1970-01-01T00:00:00Z")
    );
    assert!(i.sources["orders"].path.is_none());
}

#[test]
fn each_mistake_is_named_by_its_key() {
    let text = VALID
        .replace("connection = \"erp\"", "connection = \"crm\"")
        .replace("record_id = \".id\"\n", "")
        .replace("max_pages = 5", "max_pages = 0\nmethd = \"GET\"");
    let found = keys(&text);
    for key in [
        "sources.orders.poll.connection",
        "sources.orders.poll.record_id",
        "sources.orders.poll.max_pages",
        "sources.orders.poll.methd",
    ] {
        assert!(found.contains(&key.to_owned()), "{key} not in {found:?}");
    }
}

#[test]
fn bad_jq_is_named_by_its_key_and_line() {
    let text = VALID.replace("records = \".data\"", "records = \".data | (\"");
    let problems = problems(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "sources.orders.poll.records");
    assert_eq!(problems[0].line, Some(10));
    let text = VALID.replace("record_id = \".id\"", "record_id = \"$event.id\"");
    assert_eq!(keys(&text), ["sources.orders.poll.record_id"]);
    // A tagged table is read whole, so the problem points at the table.
    let text = VALID.replace("next = \".meta.next\"", "next = \"nope(\"");
    let problems = self::problems(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "sources.orders.poll.pagination");
    assert!(problems[0].message.contains("nope("), "{problems:?}");
}

#[test]
fn bad_schedules_and_missing_timing_are_named() {
    let text = VALID.replace("every = \"30s\"", "schedule = \"61 * * * *\"");
    let problems = problems(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "sources.orders.poll.schedule");
    assert!(problems[0].message.contains("cron"), "{problems:?}");
    let text = VALID.replace(
        "every = \"30s\"",
        "every = \"30s\"\nschedule = \"* * * * *\"",
    );
    assert_eq!(keys(&text), ["sources.orders.poll.schedule"]);
    let text = VALID.replace("every = \"30s\"\n", "");
    assert_eq!(keys(&text), ["sources.orders.poll.every"]);
    let text = VALID.replace("every = \"30s\"", "every = \"10ms\"");
    assert_eq!(keys(&text), ["sources.orders.poll.every"]);
}

#[test]
fn listen_keys_on_a_poll_source_and_a_source_without_either_are_refused() {
    let text = VALID.replace(
        "[sources.orders]\n",
        "[sources.orders]\npath = \"/hooks/orders\"\ndedup_key = { header = \"X-Id\" }\n",
    );
    let found = keys(&text);
    assert!(
        found.contains(&"sources.orders.path".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&"sources.orders.dedup_key".to_owned()),
        "{found:?}"
    );
    let text = VALID.replace(
        "event_type = { jq = '\"order.\" + .status' }",
        "event_type = { header = \"X-Type\" }",
    );
    assert_eq!(keys(&text), ["sources.orders.event_type"]);
    assert_eq!(
        keys("[sources.shop]\nmethods = [\"POST\"]\n"),
        ["sources.shop.path"]
    );
}

#[test]
fn hostile_values_are_refused_without_panicking() {
    let deep = format!("records = '{}'", "[".repeat(10_000));
    let text = VALID.replace("records = \".data\"", &deep);
    assert_eq!(keys(&text), ["sources.orders.poll.records"]);
    let text = VALID.replace("path = \"/v1/orders\"", "path = \"v1/orders\"");
    assert_eq!(keys(&text), ["sources.orders.poll.path"]);
    let text = VALID.replace("limit = \"100\"", "limit = { jq = 1 }");
    assert_eq!(keys(&text).len(), 1);
    let text = VALID.replace(
        "query = {",
        "headers = { \"bad header\" = \"x\" }\nquery = {",
    );
    assert_eq!(keys(&text), ["sources.orders.poll.headers.bad header"]);
}
