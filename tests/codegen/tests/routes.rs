//! The generated route table and envelopes.

use codegen_tests::shop::{
    LoginResponse, OrderResponse, account_service, common::BaseResp, shop_service,
};
use idlgen_runtime::{Endpoint, Envelope, Method, Source};

#[test]
fn every_route_is_in_the_crate_table_in_idl_order() {
    let routes: Vec<String> = codegen_tests::ROUTES
        .iter()
        .map(|r| format!("{} {} -> {}.{}", r.method, r.path, r.service, r.rpc))
        .collect();
    assert_eq!(
        routes,
        [
            "GET /shops/search -> ShopService.Search",
            "POST /shops/:shop_id/orders -> ShopService.Order",
            "PUT /shops/:shop_id/orders/retry -> ShopService.Order",
            "GET /orders/:order_no -> ShopService.Track",
            "POST /accounts/login -> AccountService.Login",
        ]
    );
    assert_eq!(shop_service::REGISTRY_NAME, "shop.service");
    assert_eq!(
        account_service::REGISTRY_NAME,
        "AccountService",
        "defaults to the IDL name"
    );
}

#[test]
fn route_specs_carry_paths_auth_tokens_and_fields() {
    let order = shop_service::OrderPost::ROUTE;
    assert_eq!(order.router_path, "/shops/{shop_id}/orders");
    assert!(order.auth);
    let sources: Vec<(&str, Source, &str)> = order
        .fields
        .iter()
        .map(|f| (f.name, f.source, f.key))
        .collect();
    assert_eq!(sources[0], ("shop_id", Source::Path, "shop_id"));
    assert_eq!(sources[1], ("skus", Source::Body, "skus"));
    assert_eq!(order.fields[1].rule, Some("len($) > 0 && len($) <= 10"));
    assert_eq!(shop_service::OrderPut::ROUTE.method, Method::Put);
    assert_eq!(account_service::Login::ROUTE.issue_token, Some("account"));
    assert!(!account_service::Login::ROUTE.auth);
}

#[test]
fn envelope_splits_status_from_data_and_skips_absent_fields() {
    let resp = OrderResponse {
        order_id: Some(7),
        base_resp: BaseResp {
            status_code: 10003,
            status_message: "taken".into(),
        },
    };
    assert_eq!((resp.code(), resp.message()), (10003, "taken"));
    assert_eq!(
        serde_json::to_value(resp.data()).unwrap(),
        serde_json::json!({"order_id": 7})
    );

    let empty = OrderResponse {
        order_id: None,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(empty.data()).unwrap(),
        serde_json::json!({})
    );
}

#[test]
fn a_response_without_base_resp_is_a_success_with_all_fields_as_data() {
    let resp = LoginResponse {
        account: "ann".into(),
    };
    assert_eq!((resp.code(), resp.message()), (0, ""));
    assert_eq!(
        serde_json::to_value(resp.data()).unwrap(),
        serde_json::json!({"account": "ann"})
    );
}
