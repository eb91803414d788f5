//! The fixture IDL of `tests/codegen` (a shop: query, header, path and body bindings, two
//! services, auth, token issuing) mounted with no gateway code written for it.

use contract_tests::{Gateway, gateway_config, jwt};
use volo_http::http::Method;

async fn shop_gateway() -> Gateway {
    // Nothing listens on port 1: requests that pass every check answer 10001.
    let config = gateway_config(&["127.0.0.1:1".to_owned()], &[]);
    let options = config.client_options();
    let (app, mounted) =
        gateway::app_with(&config, jwt(), |m| codegen_tests::visit_routes(m, &options))
            .expect("a valid CORS configuration");
    assert_eq!(mounted.len(), codegen_tests::ROUTES.len());
    Gateway::serve(app).await
}

#[tokio::test]
async fn every_fixture_route_is_mounted() {
    let gw = shop_gateway().await;
    let (token, _) = jwt().issue("acct").unwrap();
    let auth = format!("Bearer {token}");
    for route in codegen_tests::ROUTES {
        let path = route.path.replace(":shop_id", "7");
        let method = Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
        let a = gw
            .send(
                method,
                &path,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                Some(b"{}".to_vec()),
            )
            .await;
        assert!(
            !matches!(a.status.as_u16(), 404 | 405),
            "{} {path}: {a:?}",
            route.method
        );
    }
}

#[tokio::test]
async fn query_and_header_fields_are_bound_and_validated() {
    let gw = shop_gateway().await;
    let a = gw.get("/shops/search?q=ab", &[]).await;
    assert!(a.assert_error(400).contains("X-Tenant"), "{a:?}");
    let tenant = [("x-tenant", "acme")];
    let a = gw.get("/shops/search?q=a", &tenant).await;
    assert!(a.assert_error(400).contains("`q`"), "{a:?}");
    let a = gw.get("/shops/search?q=ab&page=two", &tenant).await;
    assert!(a.assert_error(400).contains("page"), "{a:?}");
    let a = gw.get("/shops/search?q=ab&page=0", &tenant).await;
    assert!(a.assert_error(400).contains("`page`"), "{a:?}");
    // Headers are matched case-insensitively; everything valid reaches the (absent) service.
    let a = gw
        .get("/shops/search?q=ab&tag=1&tag=2", &[("X-TENANT", "acme")])
        .await;
    assert_eq!((a.status.as_u16(), a.code()), (200, 10001), "{a:?}");
}

#[tokio::test]
async fn auth_and_body_rules_apply_to_fixture_routes() {
    let gw = shop_gateway().await;
    let body = br#"{"skus": ["a"], "ship_to": {"city": "Paris"}}"#.to_vec();
    let json = ("content-type", "application/json");
    let a = gw
        .send(Method::POST, "/shops/7/orders", &[json], Some(body.clone()))
        .await;
    assert_eq!((a.status.as_u16(), a.code()), (401, 10004), "{a:?}");

    let (token, _) = jwt().issue("acct").unwrap();
    let auth = format!("Bearer {token}");
    let headers = [json, ("authorization", auth.as_str())];
    let a = gw
        .send(
            Method::PUT,
            "/shops/7/orders/retry",
            &headers,
            Some(br#"{"skus": []}"#.to_vec()),
        )
        .await;
    assert!(a.assert_error(400).contains("ship_to"), "{a:?}");
    let a = gw
        .send(
            Method::POST,
            "/shops/7/orders",
            &headers,
            Some(br#"{"skus": [], "ship_to": {"city": "Paris"}}"#.to_vec()),
        )
        .await;
    assert!(a.assert_error(400).contains("`skus`"), "{a:?}");
    let nested = br#"{"skus": ["a"], "ship_to": {"city": "Paris"},
        "alternates": [{"city": "Lyon"}, {"city": ""}]}"#;
    let a = gw
        .send(
            Method::POST,
            "/shops/7/orders",
            &headers,
            Some(nested.to_vec()),
        )
        .await;
    assert!(
        a.assert_error(400).contains("`alternates[1].city`"),
        "{a:?}"
    );
    let a = gw
        .send(Method::POST, "/shops/7/orders", &headers, Some(body))
        .await;
    assert_eq!((a.status.as_u16(), a.code()), (200, 10001), "{a:?}");
}
