//! A connection added to the integration file while egress runs is served without a restart;
//! until then a call for it is a wait (`unknown_connection`), never a permanent failure.

use std::time::Duration;

use hookyard_core::{
    Integration,
    fault::{self, Class, WaitReason},
    reload::Reload,
};
use hookyard_proto::egress::v1::egress_service_client::EgressServiceClient;
use hookyard_testkit::wait_for;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

use crate::call;

fn connection(name: &str, base_url: &str) -> String {
    format!("[connections.{name}]\nbase_url = \"{base_url}\"\nallow_private = [\"127.0.0.0/8\"]\n")
}

#[tokio::test]
async fn a_connection_added_to_the_file_is_served_without_a_restart() -> anyhow::Result<()> {
    let partner = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("hookyard.toml");
    let first = connection("erp", &partner.uri());
    std::fs::write(&path, &first)?;
    let integration = Integration::parse(&first, &|_| None)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let settings = hookyard_egress::Settings {
        integration: std::sync::Arc::new(integration),
        token_endpoint: None,
        reload: Some(Reload {
            path: path.clone(),
            interval: Duration::from_millis(100),
        }),
        audit: None,
    };
    tokio::spawn(hookyard_egress::run(settings, listener, shutdown.clone()));
    let egress = EgressServiceClient::connect(format!("http://{address}")).await?;
    let send = |name: &str| {
        let mut egress = egress.clone();
        let request = call(name, "GET", "/ping");
        async move { egress.call(request).await }
    };

    let unknown = send("crm").await.expect_err("not configured yet");
    assert_eq!(
        fault::classify(&unknown),
        Class::Wait(fault::Wait {
            reason: WaitReason::UnknownConnection,
            retry_after: None
        })
    );

    std::fs::write(
        &path,
        format!("{first}{}", connection("crm", &partner.uri())),
    )?;
    wait_for(Duration::from_secs(10), "crm to be served", || async {
        send("crm").await.is_ok_and(|r| r.get_ref().status == 200)
    })
    .await?;
    assert_eq!(
        send("erp").await?.into_inner().status,
        200,
        "erp still served"
    );
    shutdown.cancel();
    Ok(())
}
