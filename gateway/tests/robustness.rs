//! Bugs and slowness: a handler that panics answers 500 with a JSON body and the gateway keeps
//! serving; a request past the deadline answers 504 with a JSON body.

use contract_tests::{Gateway, gateway_config, jwt};
use rpc::runtime::{
    BindError, CallError, Endpoint, Envelope, Invalid, Method, RequestParts, RouteSpec, Validate,
};

struct Boom;
struct Nothing;

impl Validate for Nothing {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

impl Envelope for Nothing {
    fn code(&self) -> i64 {
        0
    }
    fn message(&self) -> &str {
        ""
    }
    fn data(&self) -> impl serde::Serialize + '_ {}
}

static BOOM: RouteSpec = RouteSpec {
    method: Method::Get,
    path: "/boom",
    router_path: "/boom",
    service: "Test",
    rpc: "Boom",
    auth: false,
    issue_token: None,
    fields: &[],
};

impl Endpoint for Boom {
    type Client = ();
    type Request = Nothing;
    type Response = Nothing;
    const ROUTE: &'static RouteSpec = &BOOM;

    fn bind<P: RequestParts + ?Sized>(parts: &P) -> Result<Nothing, BindError> {
        if parts.query() == Some("panic") {
            panic!("a bug in binding");
        }
        Ok(Nothing)
    }

    async fn call(_: &(), _: Nothing) -> Result<Nothing, CallError> {
        Ok(Nothing)
    }
}

/// Never answers.
struct Slow;

static SLOW: RouteSpec = RouteSpec {
    method: Method::Get,
    path: "/slow",
    router_path: "/slow",
    service: "Test",
    rpc: "Slow",
    auth: false,
    issue_token: None,
    fields: &[],
};

impl Endpoint for Slow {
    type Client = ();
    type Request = Nothing;
    type Response = Nothing;
    const ROUTE: &'static RouteSpec = &SLOW;

    fn bind<P: RequestParts + ?Sized>(_: &P) -> Result<Nothing, BindError> {
        Ok(Nothing)
    }

    async fn call(_: &(), _: Nothing) -> Result<Nothing, CallError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_request_past_the_deadline_answers_504() {
    let config = gateway_config(&["127.0.0.1:1".to_owned()], &["--request-timeout", "200ms"]);
    let (app, _) = gateway::app_with(&config, jwt(), |m| {
        rpc::runtime::RouteVisitor::visit::<Slow>(m, &())
    })
    .expect("a valid CORS configuration");
    let gw = Gateway::serve(app).await;
    let a = gw.get("/slow", &[]).await;
    a.assert_error(504);
}

#[tokio::test]
async fn a_panic_answers_500_and_serving_goes_on() {
    let config = gateway_config(&["127.0.0.1:1".to_owned()], &[]);
    let (app, _) = gateway::app_with(&config, jwt(), |m| {
        rpc::runtime::RouteVisitor::visit::<Boom>(m, &())
    })
    .expect("a valid CORS configuration");
    let gw = Gateway::serve(app).await;
    let a = gw.get("/boom?panic", &[]).await;
    assert_eq!(a.assert_error(500), "internal error");
    let ok = gw.get("/boom", &[]).await;
    assert_eq!(ok.status.as_u16(), 200, "{ok:?}");
    assert_eq!(
        ok.json,
        serde_json::json!({"code": 0, "message": "Success", "data": null})
    );
}
