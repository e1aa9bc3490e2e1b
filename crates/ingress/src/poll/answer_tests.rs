use super::*;
use hookyard_core::Integration;
use hookyard_proto::egress::v1::Header as CallHeader;

fn poll(extra: &str) -> Poll {
    let text = format!(
        r#"
[sources.erp.poll]
connection = "erp"
path = "/v1/orders"
every = "30s"
records = ".data"
record_id = ".id"
{extra}
[connections.erp]
base_url = "https://erp.example.com/api"
"#
    );
    let i = Integration::parse(&text, &|_| None).expect("valid");
    i.sources["erp"].poll.clone().expect("poll")
}

const NULL: serde_json::Value = serde_json::Value::Null;

fn vars() -> PollVars<'static> {
    PollVars {
        cursor: &NULL,
        now: 0,
    }
}

fn called() -> Called<'static> {
    Called {
        method: "GET",
        path: "/v1/orders?since=x",
        received_at_ms: 5,
    }
}

fn read(p: &Poll, answer: serde_json::Value) -> Result<Vec<Record>, PollError> {
    records("erp", p, &answer, &vars(), &called(), 1024)
}

#[test]
fn each_record_becomes_an_event_keyed_by_id_and_version() {
    let p = poll("record_version = \".v\"");
    let out = read(
        &p,
        serde_json::json!({"data": [{"id": "a", "v": 1}, {"id": 2, "v": 1}, {"id": "a", "v": 2}]}),
    )
    .expect("reads");
    assert_eq!(out.len(), 3);
    assert_eq!(out[1].id.as_deref(), Some("2"));
    let e = &out[0].event;
    assert_eq!(e.source, "erp");
    assert_eq!(
        (e.path.as_str(), e.query.as_str()),
        ("/v1/orders", "since=x")
    );
    assert_eq!(e.dedup_key, r#"poll:["a","1"]"#);
    assert_eq!(e.id, envelope::event_id("erp", r#"poll:["a","1"]"#));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&e.body).ok(),
        Some(out[0].value.clone())
    );
    // Another version of the same record is another event; the same one is the same event.
    assert_ne!(out[0].event.id, out[2].event.id);
    let again = read(
        &p,
        serde_json::json!({"data": [{"id": "a", "v": 1, "other": true}]}),
    )
    .expect("reads");
    assert_eq!(again[0].event.id, out[0].event.id);
}

#[test]
fn ids_cannot_collide_through_their_characters() {
    let p = poll("record_version = \".v\"");
    let out = read(
        &p,
        serde_json::json!({"data": [{"id": "a\",\"b", "v": "c"}, {"id": "a", "v": "b\",\"c"}]}),
    )
    .expect("reads");
    assert_ne!(out[0].event.id, out[1].event.id);
}

#[test]
fn a_record_without_id_is_kept_under_a_hash_of_itself() {
    let out = read(
        &poll(""),
        serde_json::json!({"data": [{"x": 1}, {"x": 1}, {"x": 2}]}),
    )
    .expect("reads");
    assert_eq!(out[0].id, None);
    assert_eq!(out[0].event.id, out[1].event.id);
    assert_ne!(out[0].event.id, out[2].event.id);
}

#[test]
fn answers_that_are_not_lists_are_errors() {
    let p = poll("");
    assert!(
        read(&p, serde_json::json!({"data": null}))
            .expect("none")
            .is_empty()
    );
    assert!(read(&p, serde_json::json!({})).expect("none").is_empty());
    for bad in [
        serde_json::json!({"data": "x"}),
        serde_json::json!({"data": {"a": 1}}),
    ] {
        assert!(matches!(read(&p, bad), Err(PollError::Answer { .. })));
    }
    let p = poll("record_version = \".v + 1\"");
    assert!(matches!(
        read(&p, serde_json::json!({"data": [{"id": 1, "v": "text"}]})),
        Err(PollError::Answer { .. })
    ));
}

#[test]
fn a_record_over_the_size_limit_is_an_error() {
    let big = "x".repeat(2000);
    assert!(matches!(
        read(&poll(""), serde_json::json!({"data": [{"id": "big", "pad": big}]})),
        Err(PollError::RecordTooLarge { bytes, limit: 1024, .. }) if bytes > 1024
    ));
}

#[test]
fn hostile_bodies_are_errors_not_crashes() {
    for body in [
        b"\xff\xfe not json".to_vec(),
        b"".to_vec(),
        "[".repeat(100_000).into_bytes(),
        format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
    ] {
        let response = CallResponse {
            status: 200,
            body,
            ..Default::default()
        };
        assert!(matches!(parse(&response), Err(PollError::Answer { .. })));
    }
}

fn next(
    p: &Poll,
    page: &PageRef,
    count: usize,
    response: &CallResponse,
    answer: &serde_json::Value,
) -> Option<PageRef> {
    let base = Url::parse("https://erp.example.com/api").expect("url");
    let request = Url::parse("https://erp.example.com/api/v1/orders").expect("url");
    Next {
        pagination: &p.pagination,
        page,
        records: count,
        base: &base,
        request: &request,
    }
    .find(response, answer, &vars())
    .expect("finds")
}

#[test]
fn the_next_page_follows_the_pagination() {
    let empty = CallResponse::default();
    let p = poll("pagination = { type = \"cursor\", next = \".next\", param = \"after\" }");
    let answer = serde_json::json!({"next": "t2"});
    assert_eq!(
        next(&p, &PageRef::First, 2, &empty, &answer),
        Some(PageRef::Param {
            name: "after".into(),
            value: "t2".into()
        })
    );
    assert_eq!(
        next(
            &p,
            &PageRef::First,
            2,
            &empty,
            &serde_json::json!({"next": ""})
        ),
        None
    );

    let p = poll("pagination = { type = \"page\", param = \"page\", page_size = 2 }");
    let page = PageRef::first(&p.pagination);
    assert_eq!(
        next(&p, &page, 2, &empty, &NULL),
        Some(PageRef::Param {
            name: "page".into(),
            value: "2".into()
        })
    );
    assert_eq!(next(&p, &page, 1, &empty, &NULL), None);

    let p = poll("pagination = { type = \"offset\", param = \"offset\" }");
    let page = PageRef::Param {
        name: "offset".into(),
        value: "10".into(),
    };
    assert_eq!(
        next(&p, &page, 3, &empty, &NULL),
        Some(PageRef::Param {
            name: "offset".into(),
            value: "13".into()
        })
    );
    assert_eq!(next(&p, &page, 0, &empty, &NULL), None);

    let p = poll("pagination = { type = \"link\" }");
    let response = CallResponse {
        headers: vec![CallHeader {
            name: "Link".into(),
            value: r#"<https://erp.example.com/api/v1/orders?page=2>; rel="next""#.into(),
        }],
        ..Default::default()
    };
    assert_eq!(
        next(&p, &PageRef::First, 1, &response, &NULL),
        Some(PageRef::Path("/v1/orders?page=2".into()))
    );
    assert_eq!(next(&p, &PageRef::First, 1, &empty, &NULL), None);
    assert_eq!(next(&poll(""), &PageRef::First, 5, &response, &NULL), None);
}

#[test]
fn the_cursor_comes_from_the_last_record_or_the_answer() {
    let p = poll("cursor = { record = \".at\" }");
    let record = serde_json::json!({"at": "t9"});
    assert_eq!(
        cursor(p.cursor.as_ref(), Some(&record), None, &vars()).expect("runs"),
        Some(serde_json::json!("t9"))
    );
    assert_eq!(
        cursor(p.cursor.as_ref(), None, Some(&record), &vars()).expect("runs"),
        None
    );
    let p = poll("cursor = { answer = \".high\" }");
    let answer = serde_json::json!({"high": 42});
    assert_eq!(
        cursor(p.cursor.as_ref(), None, Some(&answer), &vars()).expect("runs"),
        Some(serde_json::json!(42))
    );
    assert_eq!(
        cursor(None, Some(&record), Some(&answer), &vars()).expect("runs"),
        None
    );
}
