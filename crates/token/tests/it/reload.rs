//! The integration file changes while the token service runs: a connection added to it is
//! served, and a client-credentials connection whose secret was wrong (the authorization server
//! answering `invalid_grant`) recovers once the file points at the right one — no restart.

use std::{path::Path, sync::Arc, time::Duration};

use hookyard_core::{Integration, reload::Reload};
use hookyard_proto::token::v1::{GetTokenRequest, token_service_client::TokenServiceClient};
use hookyard_testkit::wait_for;
use tokio_util::sync::CancellationToken;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::token_body;

/// A client-credentials connection `name` whose secret is read from `secret_file`.
fn connection(name: &str, token_url: &str, secret_file: &Path) -> String {
    format!(
        "[connections.{name}]\nbase_url = \"https://{name}.example\"\nallow_private = [\"127.0.0.0/8\"]\nauth = {{ type = \"oauth2_client_credentials\", token_url = \"{token_url}\", client_id = \"hookyard\", client_secret = \"${{file:{}}}\", client_auth = \"client_secret_post\" }}\n",
        secret_file.display()
    )
}

#[tokio::test]
async fn connections_added_or_fixed_in_the_file_are_served_without_a_restart() -> anyhow::Result<()>
{
    let server = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::body_string_contains("client_secret=right-secret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-1", Some(3600))))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(matchers::method("POST"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "invalid_grant"})),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    let token_url = format!("{}/token", server.uri());
    let dir = tempfile::tempdir()?;
    let (wrong, right) = (dir.path().join("wrong"), dir.path().join("right"));
    std::fs::write(&wrong, "wrong-secret\n")?;
    std::fs::write(&right, "right-secret\n")?;
    let path = dir.path().join("hookyard.toml");
    let first = connection("erp", &token_url, &wrong);
    std::fs::write(&path, &first)?;

    let integration = Integration::parse(&first, &|_| None)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let settings = hookyard_token::Settings {
        integration: Arc::new(integration),
        store: None,
        reload: Some(Reload {
            path: path.clone(),
            interval: Duration::from_millis(100),
        }),
    };
    tokio::spawn(hookyard_token::run(settings, listener, shutdown.clone()));
    let client = TokenServiceClient::connect(format!("http://{address}")).await?;
    let get = |name: &str| {
        let mut client = client.clone();
        let connection = name.to_owned();
        async move { client.get_token(GetTokenRequest { connection }).await }
    };

    let refused = get("erp").await.expect_err("the secret is wrong");
    assert_ne!(refused.code(), tonic::Code::Ok);
    assert_eq!(
        get("crm").await.expect_err("not configured yet").code(),
        tonic::Code::NotFound
    );

    // The file now points erp at the right secret and adds crm.
    std::fs::write(
        &path,
        format!(
            "{}{}",
            connection("erp", &token_url, &right),
            connection("crm", &token_url, &right)
        ),
    )?;
    wait_for(Duration::from_secs(10), "erp and crm served", || async {
        get("erp").await.is_ok() && get("crm").await.is_ok()
    })
    .await?;
    assert_eq!(get("crm").await?.into_inner().access_token, "tok-1");
    shutdown.cancel();
    Ok(())
}
