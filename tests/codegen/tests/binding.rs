//! The generated `Endpoint::bind`: every field from where the IDL says, and clear errors.

use codegen_tests::shop::{
    common::{Currency, OrderNo, Sku},
    shop_service,
};
use idlgen_runtime::{Endpoint, RequestParts};

/// An HTTP request as the gateway would present it.
#[derive(Default)]
struct Request {
    body: &'static str,
    path: Vec<(&'static str, &'static str)>,
    query: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
}

impl RequestParts for Request {
    fn body(&self) -> &[u8] {
        self.body.as_bytes()
    }
    fn path_param(&self, name: &str) -> Option<&str> {
        self.path.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
    fn query(&self) -> Option<&str> {
        self.query
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

fn search(query: &'static str) -> Request {
    Request {
        query: Some(query),
        headers: vec![("x-tenant", "acme")],
        ..Request::default()
    }
}

#[test]
fn query_header_lists_enums_and_bools_are_bound() {
    let req = shop_service::Search::bind(&search(
        "q=red%20shoe&page=2&tag=7&tag=9&currency=2&in_stock=true",
    ))
    .unwrap();
    assert_eq!(req.q, "red shoe");
    assert_eq!(req.page, Some(2));
    assert_eq!(req.tags, Some(vec![7, 9]));
    assert_eq!(req.tenant, "acme");
    assert_eq!(req.currency, Some(Currency::USD));
    assert_eq!(req.in_stock, Some(true));
}

#[test]
fn absent_optional_fields_are_none() {
    let req = shop_service::Search::bind(&search("q=ab")).unwrap();
    assert_eq!((req.page, req.in_stock, req.currency), (None, None, None));
    assert_eq!(
        req.tags,
        Some(vec![]),
        "a list with no values is empty, not missing"
    );
}

#[test]
fn missing_and_malformed_values_name_the_field() {
    let err = shop_service::Search::bind(&search("page=1")).unwrap_err();
    assert_eq!(err.to_string(), "missing query parameter `q` (field `q`)");

    let err = shop_service::Search::bind(&search("q=ab&page=two")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid query value for field `page`: `two` is not a valid i32"),
        "{err}"
    );

    let no_header = Request {
        query: Some("q=ab"),
        ..Request::default()
    };
    let err = shop_service::Search::bind(&no_header).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing header `X-Tenant` (field `tenant`)"
    );

    let err = shop_service::Search::bind(&search("q=ab&tag=1&tag=x")).unwrap_err();
    assert!(err.to_string().contains("field `tags`"), "{err}");
}

fn order(body: &'static str) -> Request {
    Request {
        body,
        path: vec![("shop_id", "42")],
        ..Request::default()
    }
}

#[test]
fn path_and_body_fields_are_bound_together() {
    let req = shop_service::OrderPost::bind(&order(
        r#"{"skus": ["a", "b"], "ship_to": {"city": "Lyon"}, "coupon": "VIP"}"#,
    ))
    .unwrap();
    assert_eq!(req.shop_id, 42);
    assert_eq!(req.skus, vec!["a", "b"]);
    assert_eq!(req.ship_to.city, "Lyon");
    assert_eq!(req.ship_to.zip, None);
    assert_eq!(req.note, None);
    assert_eq!(
        req.coupon.as_deref(),
        Some("VIP"),
        "an unannotated field of a POST comes from the body"
    );
}

#[test]
fn bad_bodies_say_what_was_wrong() {
    let err =
        shop_service::OrderPost::bind(&order(r#"{"ship_to": {"city": "Lyon"}}"#)).unwrap_err();
    assert!(err.to_string().contains("missing field `skus`"), "{err}");

    let err = shop_service::OrderPost::bind(&order(r#"{"skus": "a", "ship_to": {"city": "x"}}"#))
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "invalid JSON body: field `skus`: invalid type: string \"a\", expected a sequence"
        ),
        "{err}"
    );

    let err = shop_service::OrderPost::bind(&order(r#"{"skus": ["a"], "ship_to": {"city": 5}}"#))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid JSON body: field `ship_to.city`: invalid type: integer `5`"),
        "a nested field is named by its path: {err}"
    );

    let err =
        shop_service::OrderPost::bind(&order(r#"{"skus": [], "ship_to": {"city": "x"}} extra"#))
            .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid JSON body: trailing characters"),
        "{err}"
    );

    let err = shop_service::OrderPost::bind(&order("{not json")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid JSON body: key must be a string at line 1 column 2"),
        "{err}"
    );

    let err = shop_service::OrderPost::bind(&order("")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the request body is empty; expected a JSON object"
    );

    let bad_path = Request {
        path: vec![("shop_id", "x")],
        body: r#"{"skus": [], "ship_to": {"city": "x"}}"#,
        ..Request::default()
    };
    let err = shop_service::OrderPost::bind(&bad_path).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid path value for field `shop_id`"),
        "{err}"
    );
}

#[test]
fn typedefs_and_enum_lists_are_bound_from_text() {
    let req = shop_service::Search::bind(&search("q=ab&sku=A-1&cur=1&cur=2")).unwrap();
    assert_eq!(req.sku, Some(Sku("A-1".into())));
    assert_eq!(req.currencies, Some(vec![Currency::EUR, Currency::USD]));
    let err = shop_service::Search::bind(&search("q=ab&cur=1&cur=euro")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid query value for field `currencies`: `euro` is not a valid i32"),
        "{err}"
    );

    let track = |order_no: &'static str| Request {
        path: vec![("order_no", order_no)],
        ..Request::default()
    };
    let req = shop_service::Track::bind(&track("42")).unwrap();
    assert_eq!(req.order_no, OrderNo(42));
    let err = shop_service::Track::bind(&track("forty-two")).unwrap_err();
    assert!(err.to_string().contains("field `order_no`"), "{err}");
}
