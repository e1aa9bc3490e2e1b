use crate::{Integration, config::Problem};

const CONNECTION: &str = "\n[connections.erp]\nbase_url = \"https://erp.example.com\"\n";

fn problems(handler: &str) -> Vec<Problem> {
    let text = format!("[handlers.h]\n{handler}\n{CONNECTION}");
    match Integration::parse(&text, &|name| (name == "TOKEN").then(|| "t".to_owned())) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().to_vec(),
    }
}

/// The keys of the problems, each with the start of its message.
fn named(handler: &str) -> Vec<(String, String)> {
    problems(handler)
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect()
}

fn assert_one(handler: &str, key: &str, says: &str) {
    let found = named(handler);
    assert!(
        found.len() == 1 && found[0].0 == key && found[0].1.contains(says),
        "expected one problem at {key} saying {says:?}, got {found:?}"
    );
}

#[test]
fn a_whole_pipeline_parses() {
    let handler = r#"
[[handlers.h.steps]]
type = "http"
name = "lookup"
connection = "erp"
method = "GET"
path = { jq = '"/v1/customers/\(.customer.id)"' }

[[handlers.h.steps]]
type = "subprocess"
name = "enrich"
when = { jq = "$steps.lookup.status == 200" }
command = ["/bin/sh", "enrich.sh"]
env = { TOKEN = "${env:TOKEN}", MODE = "live" }
mode = "persistent"
processes = 4
timeout = "5s"

[[handlers.h.steps]]
type = "transform"
name = "order"
jq = '{ id: .id, tier: $steps.enrich.result.tier, customer: $steps.lookup.body }'

[[handlers.h.steps]]
type = "http"
connection = "erp"
path = "/v1/orders"
body = { jq = '$steps.order.result' }
body_format = "xml"

[[handlers.h.steps]]
type = "publish"
event_type = "order.enriched"
body = { jq = '$steps.order.result' }

[[handlers.h.steps]]
type = "reply"
when = { jq = '$steps["3"].status == 201' }
"#;
    assert_eq!(named(handler), Vec::<(String, String)>::new());
}

#[test]
fn an_unknown_step_type_is_refused() {
    let found = named("[[handlers.h.steps]]\ntype = \"shell\"\ncommand = \"rm -rf /\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].0.starts_with("handlers.h.steps"), "{found:?}");
    assert!(found[0].1.contains("shell"), "{found:?}");
}

#[test]
fn a_step_reading_a_later_or_missing_step_is_named() {
    let handler = r#"
[[handlers.h.steps]]
type = "transform"
name = "first"
jq = '$steps.second.result'

[[handlers.h.steps]]
type = "transform"
name = "second"
jq = '$steps.first.result'

[[handlers.h.steps]]
type = "http"
connection = "erp"
path = { jq = '"/v1/\($steps.nope.result)"' }
"#;
    let found = named(handler);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, "handlers.h.steps[0].jq");
    assert!(found[0].1.contains("$steps.second") && found[0].1.contains("no step before"));
    assert_eq!(found[1].0, "handlers.h.steps[2].path");
    assert!(found[1].1.contains("$steps.nope") && found[1].1.contains("first, second"));
}

#[test]
fn step_names_are_identifiers_and_unique() {
    let two = |a: &str, b: &str| {
        format!(
            "[[handlers.h.steps]]\ntype = \"transform\"\nname = \"{a}\"\njq = \".\"\n[[handlers.h.steps]]\ntype = \"transform\"\nname = \"{b}\"\njq = \".\"\n"
        )
    };
    assert_one(&two("a", "a"), "handlers.h.steps[1].name", "another step");
    assert_one(
        &two("a", "my-step"),
        "handlers.h.steps[1].name",
        "start with a letter",
    );
    assert_one(
        &two("0", "b"),
        "handlers.h.steps[0].name",
        "start with a letter",
    );
    assert!(named(&two("lookup_1", "_b")).is_empty());
}

#[test]
fn each_mistake_in_a_step_names_its_key() {
    let sub = |extra: &str| format!("[[handlers.h.steps]]\ntype = \"subprocess\"\n{extra}\n");
    assert_one(
        &sub("command = []"),
        "handlers.h.steps[0].command",
        "must name a program",
    );
    assert_one(
        &sub("command = [\"\"]"),
        "handlers.h.steps[0].command",
        "must name a program",
    );
    assert_one(
        &sub("command = [\"x\"]\ntimeout = \"0s\""),
        "handlers.h.steps[0].timeout",
        "greater than 0",
    );
    assert_one(
        &sub("command = [\"x\"]\nmax_output_bytes = 0"),
        "handlers.h.steps[0].max_output_bytes",
        "from 1",
    );
    assert_one(
        &sub("command = [\"x\"]\nprocesses = 4"),
        "handlers.h.steps[0].processes",
        "persistent",
    );
    assert_one(
        &sub("command = [\"x\"]\nmode = \"persistent\"\nprocesses = 0"),
        "handlers.h.steps[0].processes",
        "from 1",
    );
    // A bad value inside a tagged step is reported at the step, naming the value and the choices.
    assert_one(
        &sub("command = [\"x\"]\nmode = \"forever\""),
        "handlers.h.steps[0]",
        "unknown variant `forever`, expected `oneshot` or `persistent`",
    );
    assert_one(
        &sub("command = [\"x\"]\nenv = { \"1BAD\" = \"x\" }"),
        "handlers.h.steps[0].env.1BAD",
        "environment variable names",
    );
    assert_one(
        &sub("command = [\"x\"]\nenv = { KEY = \"${env:MISSING}\" }"),
        "handlers.h.steps[0].env.KEY",
        "MISSING",
    );
    assert_one(
        &sub("command = [\"x\"]\nshell = true"),
        "handlers.h.steps[0]",
        "unknown field `shell`, expected one of",
    );
    let transform = "[[handlers.h.steps]]\ntype = \"transform\"\njq = \".a | (\"\n";
    assert_one(
        transform,
        "handlers.h.steps[0]",
        "invalid jq filter `.a | (`",
    );
    let when =
        "[[handlers.h.steps]]\ntype = \"transform\"\njq = \".\"\nwhen = { header = \"X-Go\" }\n";
    assert_one(when, "handlers.h.steps[0].when", "must be a jq filter");
    let format = "[[handlers.h.steps]]\ntype = \"http\"\nconnection = \"erp\"\npath = \"/x\"\nbody_format = \"form\"\n";
    assert_one(format, "handlers.h.steps[0].body_format", "needs a `body`");
    let format = "[[handlers.h.steps]]\ntype = \"http\"\nconnection = \"erp\"\npath = \"/x\"\nbody = \".\"\nbody_format = \"yaml\"\n";
    assert_one(format, "handlers.h.steps[0]", "unknown variant `yaml`");
    let publish = "[[handlers.h.steps]]\ntype = \"publish\"\nevent_type = \"\"\n";
    assert_one(
        publish,
        "handlers.h.steps[0].event_type",
        "must not be empty",
    );
}

#[test]
fn a_route_condition_is_jq() {
    let text = format!(
        "[[routes]]\nevent = \"*\"\nhandlers = [\"h\"]\nwhen = {{ header = \"X-Big\" }}\n\n[handlers.h]\nsteps = [{{ type = \"transform\", jq = \".\" }}]\n{CONNECTION}"
    );
    let err = Integration::parse(&text, &|_| None).expect_err("refused");
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["routes[0].when"]);
}
