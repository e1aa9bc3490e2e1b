use super::*;

const EXAMPLE: &str = include_str!("../../../../examples/shop-erp-carrier.toml");

fn env_all(name: &str) -> Option<String> {
    matches!(
        name,
        "SHOP_WEBHOOK_PASSWORD" | "ERP_CLIENT_SECRET" | "CARRIER_PASSWORD"
    )
    .then(|| format!("value-of-{name}"))
}

fn problems(text: &str) -> Vec<Problem> {
    match Integration::parse(text, &env_all) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().to_vec(),
    }
}

fn keys(text: &str) -> Vec<String> {
    problems(text).into_iter().map(|p| p.key).collect()
}

#[test]
fn example_is_valid_and_resolves_secrets() {
    let i = Integration::parse(EXAMPLE, &env_all).expect("example is valid");
    assert_eq!(i.sources.len(), 1);
    assert_eq!(i.handlers.len(), 3);
    let ConnectionAuth::OAuth2ClientCredentials { client_secret, .. } = &i.connections["erp"].auth
    else {
        panic!("erp uses oauth2");
    };
    assert_eq!(client_secret.expose(), "value-of-ERP_CLIENT_SECRET");
}

#[test]
fn example_routes_fan_out_order_events() {
    let i = Integration::parse(EXAMPLE, &env_all).expect("valid");
    assert_eq!(
        i.handlers_for("shop", "order.created"),
        ["orders", "order-audit"]
    );
    assert_eq!(i.handlers_for("shop", "shipment.updated"), ["shipments"]);
    assert!(i.handlers_for("shop", "customer.deleted").is_empty());
}

#[test]
fn missing_secret_names_key_and_variable() {
    let err = Integration::parse(EXAMPLE, &|n| {
        (n != "CARRIER_PASSWORD").then(|| "x".to_owned())
    })
    .expect_err("missing secret");
    let p = &err.problems()[0];
    assert_eq!(p.key, "connections.carrier.auth.password");
    assert!(p.message.contains("CARRIER_PASSWORD"));
    assert_eq!(err.problems().len(), 1);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = EXAMPLE
        .replace("connection = \"carrier\"", "connection = \"carrier-typo\"")
        .replace("handlers = [\"shipments\"]", "handlers = [\"shipmnts\"]")
        .replace("max_deliver = 3", "max_deliver = 3\nretries = 4");
    let keys = keys(&text);
    assert!(
        keys.contains(&"handlers.shipments.steps[0].connection".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"routes[3].handlers[0]".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"handlers.order-audit.retries".to_owned()),
        "{keys:?}"
    );
    assert_eq!(keys.len(), 3, "{keys:?}");
}

#[test]
fn problems_point_at_lines() {
    let text = "[sources.a]\npath = \"/a\"\nbogus = 1\n";
    let p = problems(text);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "sources.a.bogus");
    assert_eq!(p[0].line, Some(3));
}

#[test]
fn literal_secret_is_refused_without_echoing_it() {
    let text = "[connections.c]\nbase_url = \"https://x.example\"\nauth = { type = \"basic\", username = \"u\", password = \"hunter2-literal\" }\n";
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, Some(3));
    assert!(p[0].key.starts_with("connections.c.auth"), "{:?}", p[0]);
    assert!(!p[0].to_string().contains("hunter2"), "{}", p[0]);
}

#[test]
fn invalid_values_are_named() {
    let text = r#"
[sources.s]
path = "hooks"
methods = ["post"]

[[routes]]
event = ""
source = "nope"
handlers = []

[handlers.h]
steps = []
max_deliver = 0

[connections.c]
base_url = "ftp://x"
"#;
    let keys = keys(text);
    for k in [
        "sources.s.path",
        "sources.s.methods[0]",
        "routes[0].event",
        "routes[0].source",
        "routes[0].handlers",
        "handlers.h.steps",
        "handlers.h.max_deliver",
        "connections.c.base_url",
    ] {
        assert!(keys.contains(&k.to_owned()), "{k} missing from {keys:?}");
    }
}

#[test]
fn bad_jq_fails_at_load() {
    let text = "[sources.s]\npath = \"/s\"\nevent_type = { jq = \".type | (\" }\n";
    let p = problems(text);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "sources.s.event_type");
}

#[test]
fn unknown_key_inside_tagged_auth_is_an_error() {
    let text = "[sources.s]\npath = \"/s\"\nauth = { type = \"basic\", username = \"u\", password = \"${env:ERP_CLIENT_SECRET}\", pasword = \"x\" }\n";
    assert_eq!(problems(text).len(), 1);
}

#[test]
fn patterns() {
    assert!(pattern_matches("order.created", "order.created"));
    assert!(!pattern_matches("order.created", "order.created2"));
    assert!(pattern_matches("order.*", "order.cancelled"));
    assert!(!pattern_matches("order.*", "shipment.updated"));
    assert!(pattern_matches("*", "anything"));
    assert!(pattern_matches("*.updated", "shipment.updated"));
    assert!(pattern_matches("a*b*c", "a-x-b-y-c"));
    assert!(!pattern_matches("ab*ba", "aba"));
}

#[test]
fn a_service_resolves_only_the_secrets_in_its_scope() {
    let only_shop = |n: &str| (n == "SHOP_WEBHOOK_PASSWORD").then(|| "p".to_owned());
    let i = Integration::parse_scoped(EXAMPLE, &only_shop, SecretScope::Sources).expect("ingress");
    let SourceAuth::Basic { password, .. } = &i.sources["shop"].auth else {
        panic!("basic")
    };
    assert_eq!(password.expose(), "p");
    let ConnectionAuth::Basic { password, .. } = &i.connections["carrier"].auth else {
        panic!("basic")
    };
    assert_eq!(password.expose(), "", "connection secrets stay unresolved");
    assert!(Integration::parse_scoped(EXAMPLE, &|_| None, SecretScope::None).is_ok());
    let err = Integration::parse_scoped(EXAMPLE, &only_shop, SecretScope::Connections)
        .expect_err("connection secrets missing");
    assert_eq!(err.problems().len(), 2);
    let only_erp = |n: &str| (n == "ERP_CLIENT_SECRET").then(|| "e".to_owned());
    let i = Integration::parse_scoped(EXAMPLE, &only_erp, SecretScope::OAuth2Clients)
        .expect("token needs only the OAuth 2.0 client secret");
    let ConnectionAuth::OAuth2ClientCredentials { client_secret, .. } = &i.connections["erp"].auth
    else {
        panic!("oauth2")
    };
    assert_eq!(client_secret.expose(), "e");
}
